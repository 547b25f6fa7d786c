"""Generated from protos/coord/v1 by `make proto`; do not edit."""
