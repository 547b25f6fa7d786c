# coord: set-up, code generation and tests. Every target that needs Python packages
# depends on the virtualenv, so a fresh clone needs nothing but python3 and make.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
# Written once the project is installed into $(VENV); rebuilt when pyproject.toml changes.
STAMP := $(VENV)/.installed

PYTEST_ARGS ?=
BENCH_ARGS ?=
# The local cluster (make cluster): its directory, and one loopback port per member,
# e.g. make cluster PORTS="8001 8002 8003". NODE names one member: n1, n2, ...
CLUSTER_DIR ?= .cluster
PORTS ?=
NODE ?=
CLUSTER := $(VPY) tools/cluster.py --dir $(CLUSTER_DIR)
# TLS=1: `make cluster` serves clients with TLS and peers with mutual TLS, using the
# certificates in CERTS_DIR (made by `make certs`, or on the first TLS start).
TLS ?=
# With TLS, the members' peer ports, one per member (default: each client port + 100).
PEER_PORTS ?=
CERTS_DIR ?= $(CLUSTER_DIR)/certs
# AUTH=1: `make cluster` turns authentication on (an admin user, root, whose token is in
# $(CLUSTER_DIR)/root-token, and a peer secret; docs/security.md).
AUTH ?=

.DEFAULT_GOAL := help
.PHONY: help $(VENV) proto proto-check syncgen test sim chaos bench clean certs \
	cluster cluster-status cluster-stop cluster-kill cluster-restart cluster-logs cluster-clean

# help: list the targets (the default goal).
help:
	@echo "make test          set up $(VENV) if needed, check generated stubs, run all tests"
	@echo "                   (extra pytest arguments: make test PYTEST_ARGS='-k kv')"
	@echo "make proto         regenerate coord/** stubs from protos/ (commit the result)"
	@echo "make proto-check   fail if the committed stubs differ from what protos/ generates"
	@echo "make syncgen       regenerate the sync client's methods from the asyncio client (commit the result)"
	@echo "make sim           run the Raft simulation tests (SEED=S replays one, SEEDS=N runs N)"
	@echo "make chaos         faults + workloads + linearizability/lock/watch checkers on real processes"
	@echo "                   (DURATION=seconds, default 300; SEED=S replays; CHAOS_ARGS='--help')"
	@echo "make bench         run the load generator (bench/)"
	@echo "make cluster       start 3 local nodes in the background on 127.0.0.1:7001-7003"
	@echo "                   (PORTS=\"8001 8002 8003\" for others; data, pids, logs in $(CLUSTER_DIR)/)"
	@echo "make cluster TLS=1 the same with TLS for clients, mutual TLS between nodes (peer ports +100,"
	@echo "                   or PEER_PORTS=\"8101 8102 8103\"; etcd's JSON gateway over HTTPS on ports +1000)"
	@echo "make cluster AUTH=1 the same with authentication on (token in $(CLUSTER_DIR)/root-token)"
	@echo "make certs         a throwaway CA, n1-n3 and client certificates in $(CERTS_DIR)/ (openssl)"
	@echo "make cluster-status             role, term, leader, commit, applied, lag, log, snapshot, health"
	@echo "make cluster-stop               stop the nodes (SIGTERM, then SIGKILL); data is kept"
	@echo "make cluster-kill NODE=n2       crash one node (SIGKILL)"
	@echo "make cluster-restart NODE=n2    stop one node if it runs, start it again"
	@echo "make cluster-logs [NODE=n2]     the last lines of every node's log (LINES=N)"
	@echo "make cluster-clean              stop the nodes and delete $(CLUSTER_DIR)/"
	@echo "make .venv         create .venv and install coord with its server and dev extras"
	@echo "make clean         remove $(VENV) and build leftovers"

# .venv: create the virtualenv and install the project (editable) with the server's
# dependencies (the [server] extra; `pip install coord` alone is the client and coordctl)
# and the dev tools.
$(VENV): $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --config-settings editable_mode=compat -e '.[server,dev]'
	@touch $@

# proto: regenerate the committed stubs (coord/v1, coord/raft/v1 and their __init__.py)
# from protos/ with the pinned grpcio-tools and mypy-protobuf; see tools/protogen.py.
proto: $(STAMP)
	$(VPY) tools/protogen.py

# proto-check: regenerate into a temporary directory and fail, naming each stale, missing
# or extra file, when the committed stubs differ from it.
proto-check: $(STAMP)
	$(VPY) tools/protogen.py --check

# syncgen: rewrite the generated blocks of coord_client/sync.py and auth.py from the
# asyncio client (tools/syncgen.py); tests/client/test_sync_twins.py fails when stale.
syncgen: $(STAMP)
	$(VPY) tools/syncgen.py

# test: the whole suite, after proto-check and a strict type check of the client library
# (it ships py.typed) and of the server (services see their member only through the
# typed face, coord_server/member.py). This is what CI runs (.ci/run).
test: proto-check
	$(VPY) -m mypy coord_client coord_server
	$(VPY) -m pytest -q $(PYTEST_ARGS)

# sim: the seeded Raft simulation tests; SEED=S replays one seed, SEEDS=N runs N seeds.
sim: $(STAMP)
	$(VPY) -m pytest tests/sim -q $(if $(SEED),--seed $(SEED)) $(if $(SEEDS),--seeds $(SEEDS))

# chaos: one Jepsen-style run (tests/chaos/): 3 coord-server processes whose peer links
# all pass through fault proxies, nemeses chosen from a seed, client workloads, checkers.
# DURATION=seconds (default 300), SEED=S repeats a run; the last line is the verdict and
# the exit status is non-zero on a violation. More options: CHAOS_ARGS='--help'.
chaos: $(STAMP)
	$(VPY) -m tests.chaos --duration $(or $(DURATION),300) $(if $(SEED),--seed $(SEED)) $(CHAOS_ARGS)

# bench: the load generator and comparisons (bench/__main__.py); options in BENCH_ARGS.
bench: $(STAMP)
	$(VPY) -m bench $(BENCH_ARGS)

# cluster: start 3 nodes in the background (tools/cluster.py), wait until they agree on a
# leader, print the endpoints and a first command; a second `make cluster` leaves a running
# cluster alone, and a stopped one is started again with its data.
cluster: $(STAMP)
	@$(CLUSTER) start $(if $(PORTS),--ports "$(PORTS)") $(if $(TLS),--tls --certs $(CERTS_DIR)) $(if $(AUTH),--auth) \
		$(if $(PEER_PORTS),--peer-ports "$(PEER_PORTS)")

# certs: a throwaway CA and certificates for the local cluster (tools/certs.py, openssl);
# an existing CA in CERTS_DIR is kept. See docs/security.md.
certs: $(STAMP)
	@$(VPY) tools/certs.py --dir $(CERTS_DIR)

# cluster-status: a table of every node: name, endpoint, role, term, leader, commit, applied,
# apply lag, log entries/size, snapshot index/size, health (leader known, not far behind).
cluster-status: $(STAMP)
	@$(CLUSTER) status

# cluster-stop: SIGTERM every node, wait, SIGKILL what is left (by recorded pid); keeps data.
cluster-stop: $(STAMP)
	@$(CLUSTER) stop

# cluster-kill: crash one node with SIGKILL, e.g. make cluster-kill NODE=n2.
cluster-kill: $(STAMP)
	@$(CLUSTER) kill $(NODE)

# cluster-restart: stop one node if it runs, then start it again on its data, e.g.
# make cluster-restart NODE=n2.
cluster-restart: $(STAMP)
	@$(CLUSTER) restart $(NODE)

# cluster-logs: the last LINES (default 20) lines of every node's log, or of NODE's.
cluster-logs: $(STAMP)
	@$(CLUSTER) logs $(NODE) $(if $(LINES),--lines $(LINES))

# cluster-clean: stop the nodes and delete $(CLUSTER_DIR) (data and logs).
cluster-clean: $(STAMP)
	@$(CLUSTER) clean

# clean: remove the virtualenv and packaging leftovers (build/, dist/, *.egg-info).
clean:
	rm -rf $(VENV) build dist *.egg-info
