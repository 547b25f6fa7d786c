"""Generated from protos/coord/etcd/v3lockpb by `make proto`; do not edit."""
