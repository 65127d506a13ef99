"""Run a command; poll /proc/<pid>/status every 10 ms for the peak of VmRSS, RssAnon, RssFile (whole process tree's
main process). Prints a JSON line with the peaks (kB) at the end to stderr-file given by RSSWATCH_OUT."""
import subprocess, sys, time, json, os
p = subprocess.Popen(sys.argv[1:])
peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "RssShmem": 0, "VmHWM": 0}
at_peak_anon = {}
def children(pid):
    try:
        return [int(x) for x in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except Exception:
        return []
while p.poll() is None:
    pids = [p.pid] + children(p.pid)
    for pid in pids:
        try:
            d = {}
            for line in open(f"/proc/{pid}/status"):
                k, _, v = line.partition(":")
                if k in peak:
                    d[k] = int(v.split()[0])
            for k, v in d.items():
                peak[k] = max(peak[k], v)
            if d.get("RssAnon", 0) >= peak["RssAnon"]:
                at_peak_anon = dict(d)
        except Exception:
            pass
    time.sleep(0.01)
json.dump({"peak_kB": peak, "at_peak_anon_kB": at_peak_anon, "rc": p.returncode}, open(os.environ["RSSWATCH_OUT"], "w"))
sys.exit(p.returncode)
