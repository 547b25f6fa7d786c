"""Generated from protos/coord/etcd/authpb by `make proto`; do not edit."""
