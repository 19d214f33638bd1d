-- wrk script for the /upload workload: every request POSTs a 1 MiB body.
wrk.method = "POST"
wrk.body = string.rep("x", 1024 * 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
