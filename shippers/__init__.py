"""logtide's shipper: tails files (and collects host metrics and Prometheus scrapes) into an `Output`.

Layout, one job per module:
  config.py            `ShipperConfig`, the `shipper` section of the YAML file
  line_reader.py       bytes -> lines (max size, CRLF, binary detection)          pure
  multiline.py         lines -> events (start / continuation patterns, caps)     pure
  parsers/             plain, json, logfmt, access_log, syslog, regex; timestamps, severity   pure
  events.py            the LogEvent / MetricSample wire dicts, stable ids        pure
  fingerprint.py       file identity: device, inode, hash of the first bytes
  checkpoint_store.py  the registry of acknowledged offsets, written atomically
  harvester.py         one file: read -> send -> checkpoint only what was acknowledged
  file_watcher.py      globs, excludes, directories to watch
  shipper.py           discovery (watchfiles + periodic rescan), rotation, shutdown
  output.py            the `Output` protocol, QueueOutput / ListOutput
  kafka_output.py      the aiokafka adapter (batch API, murmur2 partition per file key)
  host_metrics.py, prometheus_scrape.py, metrics.py

The `Output` protocol (shippers/output.py) is all the core needs from a destination:

    class Output(Protocol):
        async def start(self) -> None: ...
        async def send(self, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None: ...
        async def stop(self) -> None: ...

`send` returns once every record (key, encoded event) is durably accepted and raises otherwise; the
harvester retries the same records with backoff, and advances a file's checkpoint only over a
contiguous prefix of acknowledged sends. `Shipper(cfg, output, ...)` runs the same harvesters and
registry over any such output (Kafka for `logtide ship`, an in-process queue for `logtide run`).
"""
