"""Generated from protos/coord/etcd/mvccpb by `make proto`; do not edit."""
