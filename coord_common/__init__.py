"""What the server and the client share, so that neither imports the other: the hash
ring (ring.proto's placement rules, run by the state machine's checks, the server's
Ring.Lookup and a client's local lookup alike) and the snapshot file format (written by
``coordctl snapshot save``, read by it and by ``coord-server restore``).

Rule 1: this package imports neither ``coord_server`` nor ``coord_client`` (checked by
        tests/test_layers.py), and no gRPC: a change to either side cannot change what
        the other computes, and replicated state never depends on the client library.
"""
