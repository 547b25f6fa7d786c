"""Generated from protos/coord/raft by `make proto`; do not edit."""
