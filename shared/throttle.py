"""Provider limits held across every worker of the cluster, in Redis.

- **Cooldowns.** A provider that answers 429, 503 or 529 with a wait
  (``Retry-After``, ``retry-after-ms`` or a rate-limit reset header) puts its
  instance and model in a cooldown until then, whatever its length: one key
  per pair, expiring by itself then (a later wait extends it, a shorter one
  never shortens it). Every worker reads its time to live before each call.
- **Limits** (an instance's ``limits``, for the instance as a whole or per
  model): requests, input tokens and output tokens per minute are token
  buckets refilled continuously, holding one second's share (a limit of 1,200
  requests a minute admits 20 at once, not 1,200); a request larger than a
  whole bucket goes alone when the bucket is full. A call takes from every
  bucket that applies, atomically (one Lua script), or from none and learns
  how long to wait. Token costs are the request's estimate and its
  ``max_tokens``, given back as far as the call used fewer.
  ``max_concurrent_requests`` is a sorted set of calls in flight whose claims
  lapse by themselves if a worker dies mid-call.

Every script reads the time from Redis (``TIME``), and a cooldown is a time
to live: hosts whose clocks differ share the same limits.

While Redis is away, calls go unthrottled rather than fail: the limits are a
courtesy to providers, who still answer 429 (and the turn then waits the
provider's wait itself).

No maintained library does a continuously refilled, weighted, multi-bucket
take that answers the wait (``limits`` counts windows), so the script is ours:
docs/decisions.md.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.keys import cooldown, in_flight, rate_bucket

log = logging.getLogger(__name__)
REDIS_AWAY = (RedisError, OSError)
PER_MINUTE = {
    "requests_per_minute": "requests",
    "input_tokens_per_minute": "input_tokens",
    "output_tokens_per_minute": "output_tokens",
}
CONCURRENCY = "max_concurrent_requests"
IN_FLIGHT_CLAIM_S = 900  # a call's claim on a concurrency slot lapses after this
CONCURRENCY_RECHECK_S = 0.5  # a full concurrency limit frees no sooner than some call ends

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""
# KEYS: buckets. ARGV: (refill per second, capacity, cost) per bucket.
# Takes the cost from every bucket, into debt if need be (so callers queue in the
# order they came, each with a slot of its own), and answers the seconds until the
# caller's slot: 0 when every bucket held its cost (or, for a cost larger than a
# whole bucket, was full).
_TAKE = (
    _NOW
    + """
local wait = 0
local levels = {}
for i = 1, #KEYS do
  local rate = tonumber(ARGV[i * 3 - 2])
  local capacity = tonumber(ARGV[i * 3 - 1])
  local cost = tonumber(ARGV[i * 3])
  local held = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local tokens = tonumber(held[1]) or capacity
  local at = tonumber(held[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
  levels[i] = tokens
  local needed = math.min(cost, capacity)
  if tokens < needed then
    wait = math.max(wait, (needed - tokens) / rate)
  end
end
for i = 1, #KEYS do
  local rate = tonumber(ARGV[i * 3 - 2])
  local capacity = tonumber(ARGV[i * 3 - 1])
  local cost = tonumber(ARGV[i * 3])
  redis.call('HSET', KEYS[i], 'tokens', levels[i] - cost, 'at', now)
  redis.call('EXPIRE', KEYS[i], math.ceil((capacity + cost - levels[i]) / rate) + 60)
end
return tostring(wait)
"""
)
# KEYS: buckets. ARGV: (refill per second, capacity, amount) per bucket.
_GIVE_BACK = (
    _NOW
    + """
for i = 1, #KEYS do
  local rate = tonumber(ARGV[i * 3 - 2])
  local capacity = tonumber(ARGV[i * 3 - 1])
  local amount = tonumber(ARGV[i * 3])
  local held = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  if held[1] then
    local tokens = tonumber(held[1]) + math.max(0, now - tonumber(held[2])) * rate
    redis.call('HSET', KEYS[i], 'tokens', math.min(capacity, tokens + amount), 'at', now)
  end
end
return 1
"""
)
# KEYS: in-flight sets. ARGV: the claim's seconds, member, then the limit per set.
_ENTER = (
    _NOW
    + """
local claim = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[i + 2]) then
    return 0
  end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now + claim, ARGV[2])
  redis.call('EXPIRE', KEYS[i], math.ceil(claim) + 60)
end
return 1
"""
)
# KEYS: the pair's cooldown. ARGV: its wait in ms. Answers the ms it has left.
_COOL_DOWN = """
local left = redis.call('PTTL', KEYS[1])
local wait = tonumber(ARGV[1])
if left < wait then
  redis.call('SET', KEYS[1], '1', 'PX', wait)
  left = wait
end
return left
"""


@dataclass(frozen=True)
class Bucket:
    key: str
    per_second: float
    capacity: float
    kind: str  # requests, input_tokens or output_tokens


@dataclass
class Admission:
    """What a call took from the limits, to give back what it did not use. ``wait_s``:
    how long until its slot in the buckets (the tokens are taken: it is booked)."""

    buckets: list[Bucket] = field(default_factory=list)
    taken: dict[str, int] = field(default_factory=dict)  # by kind
    in_flight: list[str] = field(default_factory=list)
    in_flight_limits: list[int] = field(default_factory=list)
    member: str = ""
    wait_s: float = 0.0

    def booking(self) -> dict[str, Any]:
        """What a turn parked until its slot keeps in its row, to call without taking again."""
        return {"buckets": [asdict(b) for b in self.buckets], "taken": self.taken}

    @classmethod
    def booked(cls, booking: dict[str, Any]) -> Admission:
        buckets = [Bucket(**b) for b in booking.get("buckets", [])]
        return cls(buckets, dict(booking.get("taken", {})), member=secrets.token_hex(8))


@dataclass(frozen=True)
class Refused:
    """No room for another call in flight: look again after ``wait_s``."""

    wait_s: float


def applicable_limits(limits: dict[str, Any], model_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The instance-wide limits and the model's own, as (scope, limits) pairs."""
    scopes = [("*", {k: v for k, v in limits.items() if k != "per_model"})]
    own = (limits.get("per_model") or {}).get(model_id)
    if own:
        scopes.append((model_id, own))
    return [(scope, values) for scope, values in scopes if values]


class Throttle:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._take = redis.register_script(_TAKE)
        self._give_back = redis.register_script(_GIVE_BACK)
        self._enter = redis.register_script(_ENTER)
        self._cool_down = redis.register_script(_COOL_DOWN)
        self._redis_away = False

    def _away(self, exc: Exception) -> None:
        if not self._redis_away:
            log.warning("provider limits unavailable, calls go unthrottled: %s", exc)
        self._redis_away = True

    def _back(self) -> None:
        if self._redis_away:
            log.info("provider limits available again")
        self._redis_away = False

    # -- cooldowns ---------------------------------------------------------------------

    async def cooldown_until(self, instance_id: str, model_id: str) -> float | None:
        """When the pair's cooldown ends (epoch seconds, this host's clock), if one is
        in force (None too while Redis is away)."""
        try:
            left_ms = await self._redis.pttl(cooldown(instance_id, model_id))
        except REDIS_AWAY as exc:
            self._away(exc)
            return None
        self._back()
        return _until(left_ms)

    async def cool_down(self, instance_id: str, model_id: str, wait_s: float) -> float:
        """Start the pair's cooldown for ``wait_s``, or keep a longer one in force;
        returns when it ends (while Redis is away: ``wait_s`` from now, for this call)."""
        wait_ms = max(1, int(wait_s * 1000))
        try:
            left_ms = await self._cool_down(keys=[cooldown(instance_id, model_id)], args=[wait_ms])
        except REDIS_AWAY as exc:
            self._away(exc)
            left_ms = wait_ms
        return time.time() + int(left_ms) / 1000

    async def cooldown_count(self) -> int:
        """How many instance and model pairs are in a cooldown now, cluster-wide."""
        return sum([1 async for _ in self._redis.scan_iter(match=cooldown("*", "*"), count=500)])

    async def cooldowns(self, instance_id: str) -> list[tuple[str, float]]:
        """The instance's cooldowns in force: (model, until)."""
        found = []
        async for key in self._redis.scan_iter(match=cooldown(instance_id, "*")):
            name = key.decode() if isinstance(key, bytes) else key
            if (until := _until(await self._redis.pttl(name))) is not None:
                found.append((name.rsplit(":", 1)[1], until))
        return sorted(found)

    # -- limits ------------------------------------------------------------------------

    async def book(
        self, instance_id: str, model_id: str, limits: dict[str, Any], cost: dict[str, int]
    ) -> Admission:
        """Take ``cost`` (requests, input_tokens, output_tokens) from every bucket that
        applies; the admission's ``wait_s`` says how long until the call may go."""
        admission = Admission(member=secrets.token_hex(8))
        for scope, values in applicable_limits(limits, model_id):
            for name, kind in PER_MINUTE.items():
                if values.get(name):
                    rate = values[name] / 60.0
                    key = rate_bucket(instance_id, scope, kind)
                    admission.buckets.append(Bucket(key, rate, max(rate, 1.0), kind))
        self.concurrency(admission, instance_id, model_id, limits)
        if admission.buckets:
            args: list[Any] = []
            for bucket in admission.buckets:
                args += [bucket.per_second, bucket.capacity, cost[bucket.kind]]
            keys = [b.key for b in admission.buckets]
            try:
                admission.wait_s = float(await self._take(keys=keys, args=args))
            except REDIS_AWAY as exc:
                self._away(exc)
                admission.buckets = []  # nothing taken, nothing to give back
                return admission
            admission.taken = dict(cost)
        return admission

    @staticmethod
    def concurrency(
        admission: Admission, instance_id: str, model_id: str, limits: dict[str, Any]
    ) -> None:
        """Note the concurrency limits that apply on ``admission`` (``enter`` takes them)."""
        for scope, values in applicable_limits(limits, model_id):
            if values.get(CONCURRENCY):
                admission.in_flight.append(in_flight(instance_id, scope))
                admission.in_flight_limits.append(int(values[CONCURRENCY]))

    async def enter(self, admission: Admission) -> Refused | None:
        """Take a slot of every concurrency limit that applies, or none (then a wait)."""
        if not admission.in_flight:
            return None
        args: list[Any] = [IN_FLIGHT_CLAIM_S, admission.member, *admission.in_flight_limits]
        try:
            entered = int(await self._enter(keys=admission.in_flight, args=args))
        except REDIS_AWAY as exc:
            self._away(exc)
            return None
        return None if entered else Refused(CONCURRENCY_RECHECK_S)

    async def settle(self, admission: Admission, used: dict[str, int]) -> None:
        """Give back what the call took but did not use, and its concurrency slot."""
        unused = {kind: max(0, admission.taken.get(kind, 0) - used.get(kind, 0)) for kind in used}
        try:
            await self._return(admission, unused)
        except REDIS_AWAY as exc:  # the buckets refill by themselves
            self._away(exc)
        try:  # the slot is freed even when the tokens could not be given back
            for key in admission.in_flight:
                await self._redis.zrem(key, admission.member)
        except REDIS_AWAY as exc:  # the claim lapses by itself
            self._away(exc)

    async def _return(self, admission: Admission, amounts: dict[str, int]) -> None:
        buckets = [b for b in admission.buckets if amounts.get(b.kind)]
        if not buckets:
            return
        args: list[Any] = []
        for bucket in buckets:
            args += [bucket.per_second, bucket.capacity, amounts[bucket.kind]]
        await self._give_back(keys=[b.key for b in buckets], args=args)


def _until(left_ms: int) -> float | None:
    """A cooldown's end on this host's clock, from its time to live (negative: none)."""
    return time.time() + left_ms / 1000 if left_ms > 0 else None
