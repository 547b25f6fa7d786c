"""Generated from protos/coord/etcd/etcdserverpb by `make proto`; do not edit."""
