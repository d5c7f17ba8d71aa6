"""Consumer-group benchmark against any Kafka-compatible broker: MEMBERS confluent-kafka
consumers (one process each, so the GIL does not serialise them) in one group read a TOPIC
that already holds a backlog, for SECONDS (throughput: messages over first-to-last message
time); then one member stops, and the time from its close until every one of its partitions is
assigned to another member is the rebalance time.
Prints one JSON line. Usage: group_bench.py BOOTSTRAP TOPIC MEMBERS SECONDS"""
import json
import multiprocessing as mp
import sys
import time
import uuid

from confluent_kafka import Consumer


def member(bootstrap, topic, group, index, stop_at, leave_at, out):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": f"m{index}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": True,
                  "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
                  "fetch.max.bytes": 16 << 20, "max.partition.fetch.bytes": 4 << 20})
    owned = set()
    assigned_at = {}

    def on_assign(cons, parts):
        now = time.time()
        for p in parts:
            owned.add(p.partition)
            assigned_at[p.partition] = now

    c.subscribe([topic], on_assign=on_assign,
                on_revoke=lambda cons, parts: owned.difference_update(p.partition for p in parts))
    msgs = nbytes = 0
    started = last = None
    while time.time() < (leave_at if leave_at else stop_at):
        for m in c.consume(num_messages=1000, timeout=0.1):
            if m.error():
                continue
            if started is None:
                started = time.time()
            msgs += 1
            nbytes += len(m.value())
            last = time.time()
    left = time.time()
    assigned = sorted(owned)
    c.close()
    out.put({"index": index, "msgs": msgs, "bytes": nbytes, "started": started, "last": last,
             "left": left, "assigned": assigned, "assigned_at": assigned_at})


def main():
    bootstrap, topic, members, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    group = f"bench-{uuid.uuid4().hex[:8]}"
    out = mp.Queue()
    t0 = time.time()
    stop_at = t0 + seconds + 8
    leave_at = t0 + seconds
    procs = [mp.Process(target=member, args=(bootstrap, topic, group, i, stop_at, leave_at if i == 0 else None, out))
             for i in range(members)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    leaver = next(r for r in results if r["index"] == 0)
    moved = leaver["assigned"]
    taken = [min((r["assigned_at"].get(p, float("inf")) for r in results if r["index"] != 0)) for p in moved]
    done = moved and all(t != float("inf") and t >= leaver["left"] for t in taken)
    start = min(r["started"] for r in results if r["started"])
    end = max(r["last"] for r in results if r["last"])
    msgs = sum(r["msgs"] for r in results)
    mb = sum(r["bytes"] for r in results) / 1e6
    print(json.dumps({
        "members": members, "partitions_of_leaver": moved,
        "consumed_msgs": msgs, "consume_msgs_per_s": round(msgs / (end - start)),
        "consume_mb_per_s": round(mb / (end - start), 1),
        "rebalance_s": round(max(taken) - leaver["left"], 3) if done else None,
    }))


if __name__ == "__main__":
    main()
