#!/usr/bin/env python3
"""Loopback socket clients for bench/http.sh (standard library only).

Every loop is bounded in count and time and talks only to 127.0.0.1.

  http_clients.py idle PORT COUNT PROBES PID      hold COUNT keep-alive connections, then
                                                  time PROBES fresh-client /healthz calls
  http_clients.py probe PORT SECONDS INTERVAL     /healthz from a fresh client every INTERVAL s
  http_clients.py streams PORT JOB COUNT PID      open COUNT ?follow=1 streams, abandon them,
                                                  time until the server has closed them all
  http_clients.py cpu PID SECONDS                 cores used per thread name over SECONDS
Each prints one JSON object.
"""
import json
import os
import socket
import sys
import time

HOST = "127.0.0.1"


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def read_response(sock, deadline):
    """Reads one Content-Length response; returns (status, body bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the body")
        rest += chunk
    return status, rest[:length]


def fresh_healthz(port, timeout=2.0):
    """One /healthz on a new connection: (ok, seconds)."""
    started = time.monotonic()
    deadline = started + timeout
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            status, _ = read_response(sock, deadline)
            return status == 200, time.monotonic() - started
    except (OSError, ValueError, IndexError):
        return False, time.monotonic() - started


def process_figures(pid):
    """RSS (MiB), peak RSS (MiB) and threads of a process, from /proc."""
    figures = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key == "VmRSS":
                    figures["rss_mib"] = round(int(value.split()[0]) / 1024, 1)
                elif key == "VmHWM":
                    figures["peak_rss_mib"] = round(int(value.split()[0]) / 1024, 1)
                elif key == "Threads":
                    figures["threads"] = int(value)
    except OSError:
        pass
    return figures


def probes_summary(results):
    times = [seconds for ok, seconds in results if ok]
    return {
        "probes": len(results),
        "succeeded": len(times),
        "success_pct": round(100.0 * len(times) / max(1, len(results)), 2),
        "p50_ms": round(1000 * percentile(times, 50), 3) if times else None,
        "p99_ms": round(1000 * percentile(times, 99), 3) if times else None,
        "max_ms": round(1000 * max(times), 3) if times else None,
    }


def idle(port, count, probes, pid):
    before = process_figures(pid)
    held = []
    failures = 0
    started = time.monotonic()
    for _ in range(count):
        if time.monotonic() - started > 120:
            break
        try:
            sock = socket.create_connection((HOST, port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, _ = read_response(sock, time.monotonic() + 5)
            if status != 200:
                failures += 1
            held.append(sock)
        except OSError:
            failures += 1
    opened_seconds = time.monotonic() - started
    time.sleep(1)
    during = process_figures(pid)
    results = [fresh_healthz(port) for _ in range(probes)]
    # The held connections are still usable: one request on every 100th.
    reused = 0
    for sock in held[::100]:
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, _ = read_response(sock, time.monotonic() + 5)
            reused += status == 200
        except OSError:
            pass
    for sock in held:
        sock.close()
    return {
        "test": "idle_keepalive", "connections_held": len(held), "connection_failures": failures,
        "open_seconds": round(opened_seconds, 2), "reused_ok": reused, "reused_tried": len(held[::100]),
        "server_before": before, "server_with_idle": during, "fresh_healthz": probes_summary(results),
    }


def probe(port, seconds, interval):
    results = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(results) < 100000:
        results.append(fresh_healthz(port))
        time.sleep(interval)
    summary = probes_summary(results)
    summary["test"] = "probe"
    return summary


def metric(port, name):
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            _, body = read_response(sock, time.monotonic() + 2)
    except (OSError, ValueError, IndexError):
        return None
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def streams(port, job, count, pid):
    before = process_figures(pid)
    request = f"GET /jobs/{job}/metrics?follow=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    opened = []
    failures = 0
    started = time.monotonic()
    for _ in range(count):
        if time.monotonic() - started > 60:
            break
        try:
            sock = socket.create_connection((HOST, port), timeout=5)
            sock.sendall(request)
            sock.settimeout(5)
            head = sock.recv(65536)
            if not head.startswith(b"HTTP/1.1 200"):
                failures += 1
            opened.append(sock)
        except OSError:
            failures += 1
    time.sleep(0.5)
    open_streams = metric(port, "kiln_http_open_streams")
    during = process_figures(pid)
    probes_open = [fresh_healthz(port) for _ in range(100)]
    closed_at = time.monotonic()
    for sock in opened:
        sock.close()
    remaining = None
    waited = None
    while time.monotonic() - closed_at < 30:
        remaining = metric(port, "kiln_http_open_streams")
        if remaining == 0:
            waited = time.monotonic() - closed_at
            break
        time.sleep(0.05)
    after = process_figures(pid)
    probes_after = [fresh_healthz(port) for _ in range(100)]
    return {
        "test": "abandoned_streams", "streams_opened": len(opened), "open_failures": failures,
        "open_streams_reported": open_streams, "server_before": before, "server_with_streams": during,
        "server_after": after, "all_closed_seconds": round(waited, 3) if waited is not None else None,
        "streams_left_after_30s": remaining if waited is None else 0,
        "healthz_while_open": probes_summary(probes_open), "healthz_after": probes_summary(probes_after),
    }


def thread_cpu(pid):
    """CPU seconds per thread name of a process, from /proc/PID/task/*/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return totals
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        name = name.rstrip("0123456789").rstrip("-") or name
        totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return totals


def process_cpu(pid):
    """CPU seconds of the whole process, exited threads included."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def cpu(pid, seconds):
    """Cores the server used over `seconds`, in all and per thread name."""
    before, total_before = thread_cpu(pid), process_cpu(pid)
    time.sleep(seconds)
    after, total_after = thread_cpu(pid), process_cpu(pid)
    shares = {name: round((after[name] - before.get(name, 0.0)) / seconds, 3)
              for name in after if after[name] - before.get(name, 0.0) > 0}
    return {"test": "thread_cpu", "seconds": seconds, "cores_used": round((total_after - total_before) / seconds, 3),
            "cores_used_by_thread": shares, "load_average": os.getloadavg()[0]}


def main():
    command = sys.argv[1]
    if command == "idle":
        result = idle(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif command == "probe":
        result = probe(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    elif command == "cpu":
        result = cpu(int(sys.argv[2]), float(sys.argv[3]))
    elif command == "streams":
        result = streams(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        raise SystemExit(__doc__)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
