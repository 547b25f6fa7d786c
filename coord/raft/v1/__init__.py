"""Generated from protos/coord/raft/v1 by `make proto`; do not edit."""
