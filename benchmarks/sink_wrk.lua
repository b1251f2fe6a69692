-- wrk script for benchmarks/sink_bench.py: binary-mode CloudEvents shaped like KServe's payload
-- logger (pkg/logger/worker.go): ce-* headers, a v1 body of 20 features for the request and one
-- prediction for the response, the two sharing a ce-id. Each wrk thread numbers its own events
-- ("<run>-t<thread>-<n>", the run named by the script's argument: wrk ... -- <run>), request then
-- response, so every event is distinct and pairs. `done` prints one JSON line of figures.

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

local features = {}
for i = 1, 20 do
  features[i] = string.format("%.6f", math.sin(i) * 2)
end
local request_body = '{"instances":[[' .. table.concat(features, ",") .. ']]}'
local sent = 0
local run = "run"

function init(args)
  run = args[1] or run
end

local stamp_second, stamp = -1, ""

function request()
  sent = sent + 1
  local pair = math.floor((sent + 1) / 2)
  local now = os.time()
  if now ~= stamp_second then -- ce-time, as KServe stamps it (UTC, RFC 3339)
    stamp_second, stamp = now, os.date("!%Y-%m-%dT%H:%M:%S", now) .. ".000000Z"
  end
  local is_request = sent % 2 == 1
  local headers = {
    ["ce-specversion"] = "1.0",
    ["ce-id"] = run .. "-t" .. thread_id .. "-" .. pair,
    ["ce-type"] = is_request and "org.kubeflow.serving.inference.request"
      or "org.kubeflow.serving.inference.response",
    ["ce-source"] = "http://localhost:9081/",
    ["ce-time"] = stamp,
    ["ce-inferenceservicename"] = "bench",
    ["ce-namespace"] = "models",
    ["ce-component"] = "predictor",
    ["ce-endpoint"] = "default",
    ["Content-Type"] = "application/json",
  }
  local body = is_request and request_body or ('{"predictions":[' .. pair .. ']}')
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
