"""Generated logs for `logtide demo`: nginx access logs and Java application logs with one incident.

Pure and deterministic given a `DemoSpec` (seed and end time): the same spec writes the same bytes.
Four services sit behind one nginx; traffic is Poisson with a slow swell, latencies are log-normal
per service, and a small share of requests fail as they do on a normal day. About 70% of the way
through, the checkout service has an incident for ten minutes: its payment gateway times out, so
5xx responses and ERROR lines with Java stack traces burst, and its requests get several times slower.

The nginx format is `combined` plus the timing fields operators add to it:

    log_format timed '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                     '"$http_referer" "$http_user_agent" rt=$request_time urt=$upstream_response_time '
                     'ua=$upstream_addr';

(the shipper's `access_log` parser keeps the timing suffix as one unparsed string, so the demo config
reads these lines with a `regex` parser that names each field; see `ACCESS_PATTERN`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

ACCESS_PATTERN = (
    r"^(?P<remote_addr>\S+) - (?P<remote_user>\S+) \[(?P<time>[^\]]+)\] "
    r'"(?P<method>[A-Z]+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d{3}) (?P<body_bytes>\d+) '
    r'"(?P<referrer>[^"]*)" "(?P<user_agent>[^"]*)" rt=(?P<request_time>[\d.]+) '
    r"urt=(?P<upstream_response_time>[\d.-]+) ua=(?P<upstream>\S+)$"
)
APP_PATTERN = (
    r"^(?P<time>\d{4}-\d{2}-\d{2}T[\d:.]+Z) +(?P<level>[A-Z]+) +\[(?P<thread>[^\]]+)\] "
    r"(?P<logger>\S+) - (?P<message>.*)$"
)
APP_START = r"^\d{4}-\d{2}-\d{2}T"


@dataclass(frozen=True)
class Service:
    """One upstream: its share of traffic, typical latency and the requests it serves."""

    name: str
    rps: float
    median_ms: float
    sigma: float
    routes: tuple[tuple[str, str, int], ...]  # (method, path template, typical body bytes)
    loggers: tuple[str, ...]
    port: int


SERVICES: tuple[Service, ...] = (
    Service("catalog", 1.6, 45.0, 0.45, (
        ("GET", "/api/v1/products?page={n}", 5400), ("GET", "/api/v1/products/{id}", 2100),
        ("GET", "/api/v1/categories", 900), ("GET", "/api/v1/products/{id}/reviews", 3800),
    ), ("com.shop.catalog.ProductController", "com.shop.catalog.ProductRepository"), 8081),
    Service("search", 0.9, 110.0, 0.5, (
        ("GET", "/api/v1/search?q={q}", 7600), ("GET", "/api/v1/search/suggest?q={q}", 600),
    ), ("com.shop.search.SearchController", "com.shop.search.IndexClient"), 8082),
    Service("checkout", 0.6, 160.0, 0.4, (
        ("POST", "/api/v1/cart/items", 350), ("GET", "/api/v1/cart", 1200),
        ("POST", "/api/v1/checkout", 480), ("POST", "/api/v1/payments", 260),
    ), ("com.shop.checkout.CheckoutController", "com.shop.checkout.PaymentGatewayClient",
        "com.shop.checkout.OrderService"), 8083),
    Service("auth", 0.7, 30.0, 0.35, (
        ("POST", "/api/v1/login", 420), ("POST", "/api/v1/token/refresh", 380), ("GET", "/api/v1/me", 310),
    ), ("com.shop.auth.TokenService", "com.shop.auth.SessionStore"), 8084),
)  # fmt: skip

_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "okhttp/4.12.0",
    "shop-ios/5.2.1 CFNetwork/1494.0.7 Darwin/23.4.0",
)
_QUERIES = ("shoes", "red+dress", "laptop", "coffee+grinder", "usb-c+cable", "tent", "headphones")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class DemoSpec:
    """What to generate: the time range (ending at `end`), the seed and the incident."""

    end: datetime
    minutes: int = 180
    seed: int = 12
    service: str = "checkout"
    incident_at: float = 0.7  # fraction of the range where the incident starts
    incident_minutes: int = 10
    error_share: float = 0.35  # share of the service's requests failing during the incident
    latency_factor: float = 5.0  # how much slower its requests are during the incident
    base_error_share: float = 0.01  # 5xx share of a normal day (flaky dependencies, deploys, timeouts)
    services: tuple[Service, ...] = field(default=SERVICES)

    @property
    def start(self) -> datetime:
        return self.end - timedelta(minutes=self.minutes)

    @property
    def incident_start(self) -> datetime:
        t = self.start + timedelta(minutes=self.minutes * self.incident_at)
        return t.replace(second=0, microsecond=0)

    @property
    def incident_end(self) -> datetime:
        return self.incident_start + timedelta(minutes=self.incident_minutes)


def _clf(t: datetime) -> str:
    return f"{t.day:02d}/{_MONTHS[t.month - 1]}/{t.year}:{t:%H:%M:%S} +0000"


def _iso_ms(t: datetime) -> str:
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z"


def _client(rng: random.Random) -> str:
    return f"{rng.choice((10, 172, 192))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _fill(rng: random.Random, template: str) -> str:
    return template.format(n=rng.randrange(1, 40), id=rng.randrange(1000, 99999), q=rng.choice(_QUERIES))


def _trace(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _stack(rng: random.Random, svc: Service) -> list[str]:
    """A Java stack trace for a payment gateway timeout (continuation lines of the ERROR event)."""
    frames = [
        "java.net.SocketTimeoutException: Read timed out",
        "\tat java.base/sun.nio.ch.NioSocketImpl.timedRead(NioSocketImpl.java:288)",
        "\tat java.base/sun.nio.ch.NioSocketImpl.implRead(NioSocketImpl.java:314)",
        "\tat java.base/java.net.Socket$SocketInputStream.read(Socket.java:1099)",
        "\tat okhttp3.internal.http1.Http1ExchangeCodec.readResponseHeaders(Http1ExchangeCodec.kt:180)",
        "\tat okhttp3.internal.connection.Exchange.readResponseHeaders(Exchange.kt:110)",
        f"\tat com.shop.{svc.name}.PaymentGatewayClient.authorize(PaymentGatewayClient.java:{rng.randrange(80, 140)})",
        f"\tat com.shop.{svc.name}.OrderService.placeOrder(OrderService.java:{rng.randrange(200, 260)})",
        f"\tat com.shop.{svc.name}.CheckoutController.checkout(CheckoutController.java:57)",
        "\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)",
        "\t... 48 common frames omitted",
    ]
    return frames


def _rare_error(rng: random.Random, svc: Service) -> tuple[str, list[str]]:
    """The errors of a normal day, behind the few 5xx responses every service has."""
    msg = rng.choice(
        (
            f"Request failed: connection reset by peer trace_id={_trace(rng)}",
            f"Unexpected null in response mapping trace_id={_trace(rng)}",
        )
    )
    return msg, [
        "java.lang.IllegalStateException: response body was null",
        f"\tat com.shop.{svc.name}.ResponseMapper.map(ResponseMapper.java:{rng.randrange(20, 90)})",
        "\t... 31 common frames omitted",
    ]


def _requests(spec: DemoSpec, svc: Service, rng: random.Random) -> list[tuple[datetime, int, float]]:
    """(time, status, latency ms) of every request of one service: Poisson arrivals, slow swell."""
    out: list[tuple[datetime, int, float]] = []
    start, total = spec.start, spec.minutes * 60.0
    inc0 = (spec.incident_start - start).total_seconds()
    inc1 = (spec.incident_end - start).total_seconds()
    t = 0.0
    while True:
        swell = 1.0 + 0.15 * math.sin(2 * math.pi * t / total)
        t += rng.expovariate(svc.rps * swell)
        if t >= total:
            return out
        incident = svc.name == spec.service and inc0 <= t < inc1
        ms = math.exp(rng.gauss(math.log(svc.median_ms), svc.sigma))
        if incident:
            ms *= spec.latency_factor
        u = rng.random()
        if incident and u < spec.error_share:
            status = rng.choice((502, 503, 504, 500))
        elif u < spec.base_error_share:
            status = rng.choice((500, 502, 503))
        elif u < 0.02:
            status = rng.choice((400, 401, 404, 404, 409, 429))
        elif u < 0.03:
            status = rng.choice((301, 304))
        else:
            status = rng.choice((200, 200, 200, 201, 204)) if svc.routes[0][0] == "POST" else 200
        out.append((start + timedelta(seconds=t), status, ms))


def access_line(rng: random.Random, svc: Service, t: datetime, status: int, ms: float) -> str:
    method, template, size = rng.choice(svc.routes)
    path = _fill(rng, template)
    body = 0 if status in (204, 304) else max(0, int(rng.gauss(size, size * 0.15)))
    if status >= 500:
        body = rng.choice((157, 166, 494))
    rt = ms / 1000.0
    urt = max(0.0, rt - rng.uniform(0.0005, 0.002))
    user = "-" if rng.random() < 0.9 else f"u{rng.randrange(10000)}"
    return (
        f'{_client(rng)} - {user} [{_clf(t)}] "{method} {path} HTTP/1.1" {status} {body} '
        f'"https://shop.example.com/" "{rng.choice(_AGENTS)}" rt={rt:.3f} urt={urt:.3f} '
        f"ua=10.0.3.{svc.port - 8080}:{svc.port}"
    )


def app_events(spec: DemoSpec, svc: Service, requests: list[tuple[datetime, int, float]],
               rng: random.Random) -> list[tuple[datetime, list[str]]]:  # fmt: skip
    """The service's application log: INFO for a sample of requests, WARN for slow ones, ERROR with a
    stack trace for every 5xx the service produced."""
    out: list[tuple[datetime, list[str]]] = []
    thread = 0
    for t, status, ms in requests:
        thread = (thread + rng.randrange(1, 7)) % 200
        th = f"http-nio-{svc.port}-exec-{thread + 1}"
        at = t + timedelta(milliseconds=max(1.0, ms * 0.9))
        if at >= spec.end:
            continue
        if status >= 500 and svc.name == spec.service and spec.incident_start <= t < spec.incident_end:
            head = (f"{_iso_ms(at)} ERROR [{th}] com.shop.{svc.name}.CheckoutController - Checkout failed: "
                    f"payment authorization timed out after {ms:.0f} ms trace_id={_trace(rng)}")  # fmt: skip
            out.append((at, [head, *_stack(rng, svc)]))
        elif status >= 500:
            msg, frames = _rare_error(rng, svc)
            out.append((at, [f"{_iso_ms(at)} ERROR [{th}] {rng.choice(svc.loggers)} - {msg}", *frames]))
        elif ms > svc.median_ms * 4:
            out.append((at, [f"{_iso_ms(at)} WARN  [{th}] {rng.choice(svc.loggers)} - Slow request: {ms:.0f} ms"
                             f" (threshold {svc.median_ms * 4:.0f} ms) trace_id={_trace(rng)}"]))  # fmt: skip
        else:
            out.append((at, [f"{_iso_ms(at)} INFO  [{th}] {rng.choice(svc.loggers)} - Handled request in "
                             f"{ms:.0f} ms status={status} trace_id={_trace(rng)}"]))  # fmt: skip
    out.sort(key=lambda e: e[0])
    return out


def generate(spec: DemoSpec) -> tuple[list[str], dict[str, list[str]]]:
    """(access log lines in time order, application log lines per service), deterministic in `spec`."""
    access: list[tuple[datetime, int, str]] = []
    apps: dict[str, list[str]] = {}
    for i, svc in enumerate(spec.services):
        rng = random.Random(f"{spec.seed}:{svc.name}")
        reqs = _requests(spec, svc, rng)
        access.extend((t, i, access_line(rng, svc, t, status, ms)) for t, status, ms in reqs)
        apps[svc.name] = [line for _t, lines in app_events(spec, svc, reqs, rng) for line in lines]
    access.sort(key=lambda e: (e[0], e[1]))
    return [line for _t, _i, line in access], apps


def write_demo_logs(directory: Path, spec: DemoSpec) -> dict[str, int]:
    """Write `access.log` and `app/<service>.log` under `directory`; returns line counts."""
    access, apps = generate(spec)
    (directory / "app").mkdir(parents=True, exist_ok=True)
    (directory / "access.log").write_text("\n".join(access) + "\n")
    for name, lines in apps.items():
        (directory / "app" / f"{name}.log").write_text("\n".join(lines) + "\n" if lines else "")
    return {"access": len(access), "app": sum(len(v) for v in apps.values())}


def demo_config_yaml(logs_dir: Path, services: tuple[Service, ...] = SERVICES) -> str:
    """The demo's `logtide run` configuration (written beside the outputs for the user to reuse)."""
    logs = logs_dir.resolve()
    rules = "\n".join(
        f'    - {{service: {s.name}, regex: " ua=10\\\\.0\\\\.3\\\\.{s.port - 8080}:{s.port}$"}}'
        for s in services
    )
    path_rules = "\n".join(f'    - {{service: {s.name}, path: "*/app/{s.name}.log"}}' for s in services)
    return f"""\
# logtide run configuration written by `logtide demo`.
#   logtide run --config {logs.parent}/demo.yaml --data-dir /tmp/logtide-rerun --once
logging:
  level: WARNING
shipper:
  host_name: web-1
  inputs:
    - id: nginx
      paths: ["{logs}/access.log"]
      start_position: beginning
      labels: {{source: nginx}}
      parser:
        type: regex
        # nginx combined + rt=$request_time urt=$upstream_response_time ua=$upstream_addr
        pattern: '{ACCESS_PATTERN}'
        timestamp_formats: [clf]
    - id: app
      paths: ["{logs}/app/*.log"]
      start_position: beginning
      labels: {{source: app}}
      multiline: {{mode: start, pattern: '{APP_START}'}}
      parser:
        type: regex
        pattern: '{APP_PATTERN}'
        timestamp_formats: [iso8601]
streams:
  services:
    # the application logs: one file per service
{path_rules}
    # the access log: the upstream address names the service
{rules}
  window:
    size_seconds: 60
    lateness_seconds: 5
    # one series per service and source (each file is its own source of event time)
    group_by: [service, source]
  detect:
    detector: default
    # one-minute windows: a 30-minute warm-up, then one alarm per incident per series; a score of
    # 0.75 is a tail probability of about 1e-6 (a few hours of minute windows on a dozen series
    # would otherwise see the odd statistical blip)
    params: {{warmup: 30, refractory: 30}}
    threshold: 0.75
    critical_score: 0.95
    # the two golden signals: share of failing requests, and slow requests (p90 latency)
    rules:
      - {{metric: log.error_ratio, stat: mean}}
      - {{metric: http.request.duration_ms, stat: p90}}
"""


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None]) -> str:
    """One character per value, scaled from zero to the largest; a gap is a blank."""
    top = max((v for v in values if v is not None), default=0.0) or 1.0
    return "".join(" " if v is None else _BARS[min(7, int(v / top * 7.999))] for v in values)


def incident_view(aggregates: list[dict], spec: DemoSpec, before: int = 30, after: int = 10) -> list[str]:
    """Text lines showing the incident service's error ratio and p90 latency minute by minute around
    the incident, from the aggregate documents (what the detectors saw)."""
    series = {
        "error ratio": (f"log.error_ratio{{service={spec.service},source=nginx}}", "mean", "{:.0%}"),
        "p90 latency": (
            f"http.request.duration_ms{{service={spec.service},source=nginx}}",
            "p90",
            "{:.0f} ms",
        ),
    }
    t0 = spec.incident_start - timedelta(minutes=before)
    n = before + spec.incident_minutes + after
    starts = [t0 + timedelta(minutes=i) for i in range(n)]
    width = max(len(k) for k in series)
    lines = [
        f"{spec.service} (nginx), one character per minute, {starts[0]:%H:%M}-{starts[-1]:%H:%M} UTC:",
        f"  {'':{width}}  {' ' * before}{'^' * spec.incident_minutes}  incident",
    ]
    for label, (key, stat, fmt) in series.items():
        by_start = {
            datetime.fromisoformat(a["window"]["start"].replace("Z", "+00:00")): a["stats"][stat]
            for a in aggregates
            if a["series"]["key"] == key
        }
        values = [by_start.get(t) for t in starts]
        seen = [v for v in values if v is not None]
        lo = fmt.format(min(seen)) if seen else "-"
        hi = fmt.format(max(seen)) if seen else "-"
        lines.append(f"  {label:{width}}  {sparkline(values)}  {lo} .. {hi}")
    return lines
