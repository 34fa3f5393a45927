-- wrk `done` hook: one machine-readable line with req/s and latency percentiles (µs).
done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d secs=%.3f rps=%.1f p50_us=%d p99_us=%d p999_us=%d errors=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
