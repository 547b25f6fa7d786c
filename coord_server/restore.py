"""``coord-server restore``: seed the data directory of one member of a NEW cluster from
a snapshot file (``coordctl snapshot save``), in the manner of ``etcdctl snapshot restore``.

Run it once per member, with the same snapshot file and the same ``--initial-cluster``;
then start each member with ``coord-server --name N --data-dir D ...``. Every member gets
a data directory whose state is the snapshot's, with:

- a fresh cluster id, derived from the snapshot's checksum, the new membership and an
  optional ``--cluster-token``, so every member computes the same one on its own and the
  restored cluster can never exchange Raft messages with the cluster the backup came from;
- the new membership: the snapshot's member table is replaced by ``--initial-cluster``,
  and the Raft configuration lists exactly those members as voters;
- the Raft log starting right after the snapshot's index, at term 1: the KV revision, the
  history (and its compaction point), lease IDs and lock fencing tokens (both derived from
  log indexes) all continue from where the backup was taken, so they keep increasing.
  Only the Raft term starts again (it is per cluster).

Rule 1: nothing is written unless the file passes its checksum and decodes into a sound
        state (the same check a member makes before installing a snapshot).
Rule 2: the directory appears whole or not at all: it is built under a temporary name
        beside the target and renamed into place; an existing, non-empty target is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from collections.abc import Sequence

from coord.v1 import cluster_pb2
from coord_common.snapshot_file import InvalidSnapshotFile, read_snapshot_file
from coord_server.raft import ConfState, HardState, Snapshot, SnapshotMeta
from coord_server.settings import (
    ServerSettings,
    SettingsError,
    member_id_of,
    parse_initial_cluster,
    stable_id,
)
from coord_server.state import StateMachine
from coord_server.state import snapshot as snapshot_codec
from coord_server.state.snapshot import SnapshotError
from coord_server.storage import DiskStorage, DiskStorageError, FileIO

RESTORED_TERM = 1
"""The Raft term of the restored snapshot and of the new cluster's hard state."""


class RestoreError(Exception):
    """The restore cannot be done; the message says why (exit status 1)."""


def restored_cluster_id(members: dict[str, str], snapshot_sha256: str, token: str = "") -> int:
    """The new cluster's id: the same on every member restored from the same file with the
    same membership and token; never the id of the cluster the backup came from (that one
    is derived from the founding members alone, settings.cluster_id_of)."""
    return stable_id("restored-cluster", snapshot_sha256, token, *(f"{n}={a}" for n, a in sorted(members.items())))


def restore(
    snapshot_path: str, name: str, members: dict[str, str], data_dir: str, token: str = "",
    clients: dict[str, str] | None = None,
) -> dict[str, int]:
    """Write ``data_dir`` for member ``name`` of the new cluster ``members`` (peer
    addresses; ``clients``: their client addresses when peers have a port of their own,
    as --initial-cluster-clients) from the snapshot file; returns what was restored
    (cluster_id, member_id, index, revision)."""
    settings = ServerSettings(
        name=name, initial_cluster=members, initial_cluster_clients=clients or {}, data_dir=data_dir
    )
    settings.validate()
    client_addresses = settings.member_clients
    target = settings.data_directory
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        raise RestoreError(f"data directory {target} already exists and is not empty; restore writes a new one")
    data = read_snapshot_file(snapshot_path)
    try:
        parts = snapshot_codec.decode(data)
    except SnapshotError as err:
        raise RestoreError(f"{snapshot_path} passes its checksum but is not a coord snapshot: {err}") from None
    index = parts.applied_index
    if index < 1:
        raise RestoreError(f"{snapshot_path} covers no log entry (applied index {index}); nothing to restore")
    cluster_id = restored_cluster_id(members, hashlib.sha256(data).hexdigest(), token)
    ids = {n: member_id_of(cluster_id, n) for n in members}
    parts.members = [
        cluster_pb2.Member(id=ids[n], name=n, peer_address=a, client_address=client_addresses[n])
        for n, a in sorted(members.items(), key=lambda item: ids[item[0]])
    ]
    state = snapshot_codec.encode(parts)
    try:
        StateMachine.restore(state)  # Rule 1: exactly what a member will load on start
    except SnapshotError as err:
        raise RestoreError(f"{snapshot_path} passes its checksum but is not a sound coord snapshot: {err}") from None
    snapshot = Snapshot(SnapshotMeta(index, RESTORED_TERM, ConfState(voters=frozenset(ids.values()))), state)

    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    building = os.path.join(parent, f".{os.path.basename(target)}.restoring-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        with DiskStorage(building, cluster_id=cluster_id) as storage:
            storage.save(HardState(term=RESTORED_TERM, commit=index), [], snapshot)
        # The identity a founding member writes on its first start (server.py), naming the
        # new membership; the server then starts from the snapshot instead of bootstrapping.
        from coord_server.server import _write_identity

        _write_identity(
            building,
            {
                "name": name, "member_id": ids[name], "cluster_id": cluster_id, "initial_cluster": members,
                "initial_cluster_clients": client_addresses, "join_peers": {},
            },
        )
        if os.path.isdir(target):
            os.rmdir(target)  # empty, checked above
        os.rename(building, target)
        FileIO().fsync_dir(parent)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return {"cluster_id": cluster_id, "member_id": ids[name], "index": index, "revision": parts.revision}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coord-server restore",
        description="Write the data directory of one member of a new cluster from a snapshot file "
        "(coordctl snapshot save). Run it for every member with the same file and --initial-cluster, "
        "then start the members.",
    )
    parser.add_argument("--snapshot", required=True, metavar="FILE", help="the snapshot file")
    parser.add_argument("--name", required=True, help="this member's name in the new cluster")
    parser.add_argument("--initial-cluster", required=True, metavar="N=ADDR,...",
                        help="every member of the new cluster, e.g. n1=10.0.0.1:7379,n2=10.0.0.2:7379")
    parser.add_argument("--initial-cluster-clients", metavar="N=ADDR,...",
                        help="the members' client addresses, when peers have a port of their own "
                        "(--peer-listen, as with TLS); default: the --initial-cluster addresses")
    parser.add_argument("--data-dir", help="the data directory to create (default: ./NAME.coord); must not exist "
                        "or be empty")
    parser.add_argument("--cluster-token", default="",
                        help="mixed into the new cluster id, to tell apart clusters restored from one file "
                        "with the same membership")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``coord-server restore ...``; exit 0 done, 1 refused (bad file, existing data), 2 usage."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        members = parse_initial_cluster(args.initial_cluster, "initial_cluster")
        clients = (
            parse_initial_cluster(args.initial_cluster_clients, "initial_cluster_clients")
            if args.initial_cluster_clients else None
        )
        result = restore(args.snapshot, args.name, members, args.data_dir or "", args.cluster_token, clients)
    except SettingsError as err:
        print(f"coord-server restore: {err}", file=sys.stderr)
        return 2
    except (InvalidSnapshotFile, RestoreError, DiskStorageError) as err:
        print(f"coord-server restore: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"coord-server restore: {err}", file=sys.stderr)
        return 1
    target = args.data_dir or f"{args.name}.coord"
    print(
        f"restored revision {result['revision']} (log index {result['index']}) into {target} for member "
        f"{args.name} ({result['member_id']:x}) of new cluster {result['cluster_id']:x}; start it with "
        f"coord-server --name {args.name} --data-dir {target} and a --listen that serves "
        f"{(clients or members)[args.name]}"
    )
    return 0
