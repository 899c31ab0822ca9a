#!/usr/bin/env python3
"""Peak server memory while Kiln accepts a large dataset (issue 13).

Writes a .npy of float32 values and an .npz holding the same array deflated, uploads
each with `curl -T` (streamed from disk) to POST /datasets, and reads the server's
memory from /proc: its RSS before, its peak (VmHWM, reset before each upload through
/proc/<pid>/clear_refs) and samples every 20 ms. Standard library only; one JSON line
per upload.

    bench/upload_bench.py <kiln url> <server pid> <scratch dir> [MiB of values, default 1024]
"""
import json
import os
import subprocess
import sys
import threading
import time
import zipfile


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


def npy_header(rows, columns):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, columns)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()


def finite_random(n):
    """n random bytes read as float32 values that are all finite (bit 30 cleared)."""
    block = bytearray(os.urandom(n))
    block[3::4] = block[3::4].translate(CLEAR_BIT_6)
    return bytes(block)


CLEAR_BIT_6 = bytes(b & 0xBF for b in range(256))


def write_arrays(scratch, mib):
    columns = 1024
    rows = mib * (1 << 20) // (4 * columns)
    npy = os.path.join(scratch, "big.npy")
    npz = os.path.join(scratch, "big.npz")
    chunk_rows = 4096
    with open(npy, "wb") as f:
        f.write(npy_header(rows, columns))
        for start in range(0, rows, chunk_rows):
            f.write(finite_random(4 * columns * min(chunk_rows, rows - start)))
    with zipfile.ZipFile(npz, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z, open(npy, "rb") as src:
        with z.open("x.npy", "w", force_zip64=True) as member:
            while True:
                piece = src.read(16 << 20)
                if not piece:
                    break
                member.write(piece)
    return rows, columns, {"npy": npy, "npz": npz}


def measure(url, pid, label, path):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    time.sleep(0.5)
    before = status(pid)
    peak_sampled = [before["VmRSS"]]
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                peak_sampled[0] = max(peak_sampled[0], status(pid)["VmRSS"])
            except OSError:
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    result = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-T", path, "-X", "POST",
                             "-H", "Content-Type: application/octet-stream", f"{url}/datasets?name={label}&field=x"],
                            capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    after = status(pid)
    body, _, code = result.stdout.rpartition("\n")
    size = os.path.getsize(path)
    figures = {
        "figure": f"upload_{label}",
        "bytes": size,
        "status": int(code or 0),
        "seconds": round(seconds, 2),
        "mib_per_s": round(size / (1 << 20) / seconds, 1),
        "idle_rss_mib": round(before["VmRSS"], 1),
        "peak_rss_mib": round(after["VmHWM"], 1) if reset else None,
        "peak_sampled_rss_mib": round(peak_sampled[0], 1),
        "peak_above_idle_mib": round((after["VmHWM"] if reset else peak_sampled[0]) - before["VmRSS"], 1),
        "rss_after_mib": round(after["VmRSS"], 1),
    }
    if figures["status"] != 201:
        figures["error"] = body[:300]
    else:
        figures["stored_shape"] = json.loads(body)["fields"]["x"]["shape"]
    print(json.dumps(figures), flush=True)
    return figures


def main():
    url, pid, scratch = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    mib = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
    rows, columns, files = write_arrays(scratch, mib)
    print(json.dumps({"figure": "upload_arrays", "shape": [rows, columns], "npy_bytes": os.path.getsize(files["npy"]),
                      "npz_bytes": os.path.getsize(files["npz"])}), flush=True)
    ok = True
    for label in ("npy", "npz"):
        ok &= measure(url, pid, label, files[label])["status"] == 201
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
