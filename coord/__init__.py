"""Generated from protos/coord by `make proto`; do not edit."""
