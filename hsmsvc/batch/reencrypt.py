"""Re-encipher every stored PIN in a customer table: chunked, resumable, parallel.

The key range of the table is cut into chunks when the job is planned. A
worker claims a pending chunk, reads its rows still under the source key,
moves them through the backend's batch command, writes them back with the
target key's label, and marks the chunk done, all in one transaction. A
worker killed at any moment (``kill -9``) leaves its transaction uncommitted:
the chunk is still pending and its rows still under the source key, so the
next run takes it again and nothing is lost or done twice. On PostgreSQL the
claim is ``SELECT … FOR UPDATE SKIP LOCKED``: any number of workers, on any
number of machines, share the job without a coordinator. On SQLite a worker
takes the database's write lock for its chunk, so workers take turns.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, inspect, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from hsmsvc.batch.model import BackendMover, DryRun, JobSpec, Mode, Mover, Plan, Progress, label
from hsmsvc.batch.table import Encoding, PinTable, Tables, writer
from hsmsvc.errors import BackendUnavailable, InvalidInput

__all__ = ["BackendMover", "DryRun", "Job", "JobSpec", "Mode", "Mover", "Plan", "Progress", "label"]

def _now() -> datetime:
    return datetime.now(timezone.utc)


class Job:
    """One re-encryption job over one table; any number of these may run at once, in any processes."""

    def __init__(self, engine: Engine, tables: Tables, spec: JobSpec) -> None:
        self._engine = engine
        self._tables = tables
        self._spec = spec
        self._pg = engine.dialect.name == "postgresql"
        p = tables.pins
        self._c = tables.t.c
        self._pk, self._account, self._pin, self._ver = p.pk, p.account, p.pin, p.version

    @property
    def spec(self) -> JobSpec:
        return self._spec

    @property
    def pins(self) -> PinTable:
        return self._tables.pins

    @property
    def table_name(self) -> str:
        return self._tables.pins.name

    # -- planning --------------------------------------------------------------------

    @property
    def rejects_table(self) -> str:
        return self._tables.rejects.name

    def plan(self) -> tuple[Plan, bool]:
        """Cut the table's key range into chunks, once; later runs and other workers find the same plan.

        Also says whether this call made the plan.
        """
        self._tables.create(self._engine)
        found = self._existing()
        if found is not None:
            return found, False
        s, c = self._spec, self._c
        pk = c[self._pk]
        under = c[self._ver] == s.source
        try:
            with writer(self._engine) as conn, conn.begin():
                total = conn.execute(select(func.count()).select_from(self._tables.t).where(under)).scalar_one()
                numbered = select(pk.label("k"), func.row_number().over(order_by=pk).label("n")).where(under)
                sub = numbered.subquery()
                starts = [r[0] for r in conn.execute(
                    select(sub.c.k).where((sub.c.n - 1) % s.chunk_rows == 0).order_by(sub.c.k))]
                # The first chunk is open below and the last open above, so every key is in one chunk.
                edges: list[Any] = [None, *starts[1:], None]
                conn.execute(insert(self._tables.jobs).values(
                    name=s.name, table_name=self._tables.pins.name, mode=s.mode.value, source=s.source,
                    target=s.target, chunk_rows=s.chunk_rows, total_rows=total, chunks=len(edges) - 1,
                    created_at=_now()))
                conn.execute(insert(self._tables.chunks), [
                    {"job": s.name, "seq": i, "lo": edges[i], "hi": edges[i + 1], "done": False, "moved": 0,
                     "rejected": 0, "crypto_seconds": 0.0}
                    for i in range(len(edges) - 1)
                ])
            created = True
        except IntegrityError:
            created = False  # another worker planned it first; its plan is committed now
        found = self._existing()
        assert found is not None
        return found, created

    def planned(self) -> Plan | None:
        """The job's plan if a run made one, else None; reads only (a dry run creates no table)."""
        with self._engine.connect() as conn:
            if not inspect(conn).has_table(self._tables.jobs.name):
                return None
        return self._existing()

    def _existing(self) -> Plan | None:
        j = self._tables.jobs
        with self._engine.connect() as conn:
            row = conn.execute(select(j).where(j.c.name == self._spec.name)).first()
        if row is None:
            return None
        m = row._mapping
        s = self._spec
        if (m["table_name"], m["mode"], m["source"], m["target"], m["chunk_rows"]) != (
            self._tables.pins.name, s.mode.value, s.source, s.target, s.chunk_rows
        ):
            raise InvalidInput("job", f"{s.name} exists with another table, mode, keys or chunk size")
        return Plan(m["total_rows"], m["chunks"])

    # -- work ----------------------------------------------------------------------------

    def work(
        self,
        mover: Mover,
        worker: str,
        samples_per_chunk: int = 0,
        max_chunks: int | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> int:
        """Claim and finish chunks until every chunk is done (or ``max_chunks``); the number this worker finished.

        ``stop()`` is asked before each chunk: a stop asked for during a chunk lets that chunk commit first.
        """
        finished = 0
        while (max_chunks is None or finished < max_chunks) and not stop():
            try:
                with writer(self._engine) as conn, conn.begin():
                    done = self._one_chunk(conn, mover, worker, samples_per_chunk)
            except OperationalError:
                raise BackendUnavailable("db",
                                         "the customer database went away mid-chunk; run again to resume") from None
            if not done:
                # Chunks held by other workers: wait, since a worker that dies releases its chunk to us.
                p = self.progress()
                if p.chunks_done == p.chunks:
                    break
                time.sleep(0.1)
                continue
            finished += 1
        return finished

    def _one_chunk(self, conn: Connection, mover: Mover, worker: str, samples_per_chunk: int) -> bool:
        """Claim one pending chunk and finish it in ``conn``'s transaction; False if none was free."""
        ch, s = self._tables.chunks, self._spec
        claim = select(ch.c.seq, ch.c.lo, ch.c.hi).where(ch.c.job == s.name, ch.c.done.is_(False))
        claim = claim.order_by(ch.c.seq).limit(1)
        if self._pg:
            claim = claim.with_for_update(skip_locked=True)
        got = conn.execute(claim).first()
        if got is None:
            return False
        seq, lo, hi = got
        rows = self._rows(conn, lo, hi, lock=self._pg)
        decode = self._tables.pins.encoding.decode
        batch = [(decode(v), a) for _, a, v in rows]
        started = time.perf_counter()
        out = mover.move(batch) if rows else []
        crypto = time.perf_counter() - started
        if len(out) != len(rows):
            raise BackendUnavailable("backend", "answered a different number of rows")
        moved = [(k, new) for (k, _, _), new in zip(rows, out) if new is not None]
        rejected = [k for (k, _, _), new in zip(rows, out) if new is None]
        self._write(conn, moved)
        if rejected:
            conn.execute(insert(self._tables.rejects), [{"job": s.name, "pk": k} for k in rejected])
        if samples_per_chunk and moved:
            picked = random.sample(range(len(rows)), min(samples_per_chunk, len(rows)))
            kept = [{"job": s.name, "pk": rows[i][0], "old_value": decode(rows[i][2])}
                    for i in picked if out[i] is not None]
            if kept:
                conn.execute(insert(self._tables.samples), kept)
        conn.execute(update(ch).where(ch.c.job == s.name, ch.c.seq == seq).values(
            done=True, moved=len(moved), rejected=len(rejected), crypto_seconds=crypto, worker=worker[:80],
            finished_at=_now()))
        return True

    def _rows(self, conn: Connection, lo: Any, hi: Any, lock: bool) -> list[tuple[Any, str, Any]]:
        c = self._c
        pk = c[self._pk]
        q = select(pk, c[self._account], c[self._pin]).where(c[self._ver] == self._spec.source)
        if lo is not None:
            q = q.where(pk >= lo)
        if hi is not None:
            q = q.where(pk < hi)
        if lock:
            # Holds the rows against an application changing a PIN while this chunk moves them.
            q = q.with_for_update()
        return [(k, a, v) for k, a, v in conn.execute(q)]

    def _write(self, conn: Connection, moved: list[tuple[Any, bytes]]) -> None:
        if not moved:
            return
        if self._pg:
            n = self._write_pg(conn, moved)
        else:
            c, s = self._c, self._spec
            stmt = (
                update(self._tables.t)
                .where(c[self._pk] == bindparam("k_"), c[self._ver] == s.source)
                .values({self._pin: bindparam("v_"), self._ver: s.target})
            )
            enc = self._tables.pins.encoding.encode
            n = conn.execute(stmt, [{"k_": k, "v_": enc(v)} for k, v in moved]).rowcount
        if n != len(moved):
            # Someone else changed these rows under us: abandon the chunk rather than guess.
            raise BackendUnavailable("db", f"expected to update {len(moved)} rows, updated {n}")

    def _write_pg(self, conn: Connection, moved: list[tuple[Any, bytes]]) -> int:
        """COPY the chunk into a temporary table and UPDATE … FROM it: one statement per chunk."""
        q = self._engine.dialect.identifier_preparer.quote
        t, pk, pin, ver = (q(x) for x in (self._tables.pins.name, self._pk, self._pin, self._ver))
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS hsmsvc_moved ON COMMIT DELETE ROWS AS "
                f"SELECT {pk} AS k, {pin} AS v FROM {t} WITH NO DATA"
            )
            with cur.copy("COPY hsmsvc_moved (k, v) FROM STDIN") as copy:
                encoding = self._tables.pins.encoding
                if encoding is Encoding.HEX and _plain(moved):
                    copy.write("".join([f"{k}\t{v.hex().upper()}\n" for k, v in moved]))
                else:
                    for k, v in moved:
                        copy.write_row((k, encoding.encode(v)))
            cur.execute(
                f"UPDATE {t} SET {pin} = m.v, {ver} = %s FROM hsmsvc_moved m WHERE {t}.{pk} = m.k AND {t}.{ver} = %s",
                (self._spec.target, self._spec.source),
            )
            return int(cur.rowcount)

    # -- reporting -----------------------------------------------------------------------

    def progress(self) -> Progress:
        ch = self._tables.chunks
        with self._engine.connect() as conn:
            r = conn.execute(select(
                func.count(), func.count().filter(ch.c.done.is_(True)), func.coalesce(func.sum(ch.c.moved), 0),
                func.coalesce(func.sum(ch.c.rejected), 0), func.coalesce(func.sum(ch.c.crypto_seconds), 0.0),
            ).where(ch.c.job == self._spec.name)).one()
        return Progress(int(r[0]), int(r[1]), int(r[2]), int(r[3]), float(r[4]))

    def finish(self) -> bool:
        """Mark the job finished once every chunk is done; True the first time only."""
        j = self._tables.jobs
        p = self.progress()
        if p.chunks_done < p.chunks:
            return False
        with writer(self._engine) as conn, conn.begin():
            n = conn.execute(update(j).where(j.c.name == self._spec.name, j.c.finished_at.is_(None))
                             .values(finished_at=_now())).rowcount
        return bool(n)

    def remaining(self) -> int:
        """Rows still under the source key (the rejected ones, once the job is finished)."""
        c = self._c
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(self._tables.t)
                                    .where(c[self._ver] == self._spec.source)).scalar_one())

    def rejects(self, limit: int = 20) -> list[Any]:
        r = self._tables.rejects
        with self._engine.connect() as conn:
            return [x[0] for x in conn.execute(select(r.c.pk).where(r.c.job == self._spec.name)
                                               .order_by(r.c.pk).limit(limit))]

    def verify_sample(self, mover: Mover, k: int) -> tuple[int, int]:
        """Compare up to ``k`` sampled rows' old cryptograms with their new ones: (checked, mismatched).

        The samples are deleted afterwards: old cryptograms are not kept past the check.
        """
        sm, c, t = self._tables.samples, self._c, self._tables.t
        decode = self._tables.pins.encoding.decode
        with writer(self._engine) as conn, conn.begin():
            q = (select(sm.c.old_value, c[self._pin], c[self._account], c[self._ver])
                 .select_from(sm.join(t, c[self._pk] == sm.c.pk)).where(sm.c.job == self._spec.name))
            rows = list(conn.execute(q))
            random.shuffle(rows)
            rows = rows[:k]
            checked = mover.compare([(bytes(o), decode(v), a) for o, v, a, _ in rows]) if rows else []
            bad = sum(1 for ok, r in zip(checked, rows) if not ok or r[3] != self._spec.target)
            conn.execute(sm.delete().where(sm.c.job == self._spec.name))
        return len(rows), bad

    def dry_run(self, mover: Mover) -> DryRun:
        """What the job would do, chunk by chunk, writing nothing."""
        s, c = self._spec, self._c
        pk = c[self._pk]
        decode = self._tables.pins.encoding.decode
        rows = moved = 0
        crypto = 0.0
        with self._engine.connect() as conn:
            last: Any = None
            while True:
                q = select(pk, c[self._account], c[self._pin]).where(c[self._ver] == s.source)
                if last is not None:
                    q = q.where(pk > last)
                batch = list(conn.execute(q.order_by(pk).limit(s.chunk_rows)))
                if not batch:
                    break
                started = time.perf_counter()
                out = mover.move([(decode(v), a) for _, a, v in batch])
                crypto += time.perf_counter() - started
                rows += len(batch)
                moved += sum(1 for o in out if o is not None)
                last = batch[-1][0]
        return DryRun(rows, moved, rows - moved, crypto)


def _plain(moved: list[tuple[Any, bytes]]) -> bool:
    """Keys that COPY's text format takes as they are (no tab, newline or backslash)."""
    return all(isinstance(k, int) or not any(ch in str(k) for ch in "\t\n\\") for k, _ in moved)
