"""The benchmark: the real ``datapusher serve`` against the limits of its own stack.

``python -m bench [--quick] [--json PATH] [--only NAME ...]``; see ``docs/performance.md``.

Modules, one job each: ``plan`` (how much a quick or a full run does), ``procs`` (child
processes: pinning, CPU time, memory, stopping), ``loops`` (which event loop each side runs),
``stats`` (medians, percentiles, histograms), ``loadgen`` (wrk, or the built-in HTTP/1.1
generator), ``sink`` (the loopback webhook receiver, a process of its own), ``limits`` (the
stack's limits A, B and C), ``service`` (the real server and its admin API), ``biglog`` (a
large log written directly, and an offline rebuild), ``scenarios`` (the figures with a limit:
ingest, fan-out), ``steady`` (end-to-end latency, memory), ``logscale`` (rebuild and audit
read on the large log), ``report`` (the table and the JSON), ``errors`` (the harness's error).
"""
