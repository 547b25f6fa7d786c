"""Generated from protos/coord/etcd by `make proto`; do not edit."""
