"""Generated from protos/coord/etcd/v3electionpb by `make proto`; do not edit."""
