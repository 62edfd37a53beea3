"""Row-serial LayerNorm and softmax units (rtl/rownorm.py) vs the one definition in model/intops.py.

Every output beat of every row is compared with :func:`~equispike.model.intops.int_layernorm` /
:func:`~equispike.model.intops.int_softmax` of that row and its per-row parameters. The Amaranth
simulator runs several hundred rows of random lengths through one elaboration per unit (corner
rows included, random idle input cycles and output back-pressure, the stream contract checked
every cycle by :class:`~equispike.sim.contract.StreamChecker`). The timing methods are checked
as executable specifications: ``row_interval`` between the first beats of back-to-back rows of
one length on a full-rate prefix (the rows overlap in the unit), ``row_cycles`` for every length
into an idle unit, ``rows_in_flight`` as the fewest outstanding rows that reach
``row_interval``. Rows stay exact and in order with the input always valid and heavy output
back-pressure (rows pile up inside the unit). One Verilator build per unit repeats random rows
under back-pressure with wider datapaths.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from equispike.model.intops import LayerNormParams, SoftmaxParams, int_layernorm, int_softmax
from equispike.rtl.rownorm import RowLayerNorm, RowSoftmax
from equispike.sim.contract import StreamChecker
from equispike.sim.scoreboard import Scoreboard
from equispike.sim.streams import pack, unpack

# --------------------------------------------------------------------------------------------------
# stimulus and golden rows (shared by the Amaranth and the cocotb runs)
# --------------------------------------------------------------------------------------------------
LN_KINDS = ("random", "extremes", "equal", "single", "outlier", "small", "maxgamma")
SM_KINDS = ("random", "ties", "equal", "single", "underflow", "c0", "cmax", "extremes")


def ln_rows(rng: np.random.Generator, count: int, max_dim: int, x_width: int, gamma_width: int,
            beta_width: int, e_width: int):
    """``count`` LayerNorm rows ``(x, Γ, B, E)``, the corner kinds cycled first, then random kinds."""
    xw, gw, bw, ew = x_width, gamma_width, beta_width, e_width
    xlo, xhi = -(1 << (xw - 1)), (1 << (xw - 1)) - 1
    glo, ghi = -(1 << (gw - 1)), (1 << (gw - 1)) - 1
    blo, bhi = -(1 << (bw - 1)), (1 << (bw - 1)) - 1
    emax = (1 << ew) - 1
    rows = []
    for k in range(count):
        kind = LN_KINDS[k] if k < len(LN_KINDS) else LN_KINDS[int(rng.integers(len(LN_KINDS)))]
        D = 1 if kind == "single" else int(rng.integers(1, max_dim + 1))
        if k < 2 * len(LN_KINDS) and kind != "single":
            D = max_dim if k < len(LN_KINDS) else int(rng.integers(1, max_dim + 1))
        g = rng.integers(glo, ghi + 1, D)
        b = rng.integers(blo, bhi + 1, D)
        if kind == "random":
            x = rng.integers(xlo, xhi + 1, D)
        elif kind == "extremes":
            x = rng.choice([xlo, xhi], D)
            b = rng.choice([blo, bhi], D)
        elif kind == "equal":
            x = np.full(D, int(rng.integers(xlo, xhi + 1)))
        elif kind == "single":
            x = rng.integers(xlo, xhi + 1, D)
        elif kind == "outlier":
            x = np.zeros(D, dtype=np.int64)
            x[int(rng.integers(D))] = rng.choice([xlo, xhi])
        elif kind == "small":
            x = rng.integers(-2, 3, D)
        else:  # maxgamma: |Γ| at its largest with both signs, x at the extremes
            x = rng.choice([xlo, xhi, 0], D)
            g = rng.choice([glo, ghi], D)
        E = int(rng.choice([1, emax, int(rng.integers(1, emax + 1))]))
        rows.append((x.astype(np.int64), g.astype(np.int64), b.astype(np.int64), E))
    return rows


def ln_golden(row, K: int, P: int) -> np.ndarray:
    x, g, b, E = row
    return int_layernorm(x, g, b, LayerNormParams(E=E, K=K, P=P))


def ln_beats(row) -> list[dict]:
    x, g, b, E = row
    return [{"x": int(x[i]), "gamma": int(g[i]), "beta": int(b[i]), "e": E if i == 0 else 0,
             "last": int(i == len(x) - 1)} for i in range(len(x))]


def sm_rows(rng: np.random.Generator, count: int, max_n: int, z_width: int, c_width: int,
            typical_c: int):
    """``count`` softmax rows ``(z, C)``, the corner kinds cycled first, then random kinds."""
    zw, cw = z_width, c_width
    zlo, zhi = -(1 << (zw - 1)), (1 << (zw - 1)) - 1
    cmax = (1 << cw) - 1
    rows = []
    for k in range(count):
        kind = SM_KINDS[k] if k < len(SM_KINDS) else SM_KINDS[int(rng.integers(len(SM_KINDS)))]
        n = 1 if kind == "single" else int(rng.integers(1, max_n + 1))
        if k < len(SM_KINDS) and kind != "single":
            n = max_n
        C = int(rng.integers(0, min(cmax, 4 * typical_c) + 1))
        if kind == "random":
            z = rng.integers(zlo, zhi + 1, n)
        elif kind == "ties":   # several maxima, the rest close below
            top = int(rng.integers(zlo + 8, zhi + 1))
            z = top - rng.integers(0, 4, n)
            z[rng.integers(0, n, max(1, n // 3))] = top
        elif kind == "equal":
            z = np.full(n, int(rng.integers(zlo, zhi + 1)))
        elif kind == "single":
            z = rng.integers(zlo, zhi + 1, n)
        elif kind == "underflow":   # 2^x underflow: most e become 0
            z = rng.choice([zlo, zhi, zhi - 1, 0], n)
            C = int(rng.integers(typical_c, cmax + 1))
        elif kind == "c0":
            z = rng.integers(zlo, zhi + 1, n)
            C = 0
        elif kind == "cmax":
            z = zhi - rng.integers(0, 3, n)
            C = cmax
        else:
            z = rng.choice([zlo, zhi], n)
        rows.append((z.astype(np.int64), C))
    return rows


def sm_golden(row, G: int, H: int, F: int, P: int) -> np.ndarray:
    z, C = row
    return int_softmax(z, SoftmaxParams(C=C, G=G, H=H, F=F, P=P))


def sm_beats(row) -> list[dict]:
    z, C = row
    return [{"z": int(z[i]), "c": C if i == 0 else 0, "last": int(i == len(z) - 1)}
            for i in range(len(z))]


def check_rows(site: str, field: str, expected: list[np.ndarray], beats: list[dict]) -> int:
    """Split ``beats`` into rows by ``last`` (which must mark exactly each row's final beat) and
    compare every row with its golden row; returns the number of elements compared."""
    n_exp = sum(len(e) for e in expected)
    assert len(beats) == n_exp, f"{site}: {len(beats)} output beats, {n_exp} expected"
    sb = Scoreboard(site)
    k = 0
    for r, exp in enumerate(expected):
        got = beats[k:k + len(exp)]
        lasts = [b["last"] for b in got]
        assert lasts == [0] * (len(exp) - 1) + [1], f"{site}: row {r}: last flags {lasts}"
        sb.compare(r, exp, np.array([b[field] for b in got], dtype=np.int64))
        k += len(exp)
    assert sb.compared == n_exp > 0
    return sb.compared


# --------------------------------------------------------------------------------------------------
# Amaranth simulator
# --------------------------------------------------------------------------------------------------
def simulate(unit, rows_beats: list[list[dict]], *, timed_rows: int, idle: float, bp: float,
             seed: int, tail: int = 64, max_cycles: int = 2_000_000, limit: int | None = None):
    """Drive ``unit`` with the rows (one beat list each) in one simulation, the output stream
    checked every cycle by :class:`~equispike.sim.contract.StreamChecker`.

    The first ``timed_rows`` rows run at full rate (input valid every cycle, output always ready);
    the rest with random idle input cycles (``idle``) and random output back-pressure (``bp``).
    ``limit``: a row's first beat is offered only while fewer than ``limit`` rows are
    outstanding (first beat taken, last output beat not yet taken). After the last expected beat
    the output stays ready for ``tail`` cycles: any further beat fails. Returns
    ``(beats, in_cycles, out_cycles)``.
    """
    ist, ost = unit.i_stream, unit.o_stream
    ishape, oshape = ist.payload.shape(), ost.payload.shape()
    ipay, opay = Value.cast(ist.payload), Value.cast(ost.payload)
    flat = [b for r in rows_beats for b in r]
    firsts = set(np.cumsum([0] + [len(r) for r in rows_beats[:-1]]).tolist())
    n_timed = sum(len(r) for r in rows_beats[:timed_rows])
    n_out = len(flat)
    rng = random.Random(seed)
    beats: list[dict] = []
    in_c: list[int] = []
    out_c: list[int] = []
    checker = StreamChecker("o_stream", n_out)

    async def tb(ctx):
        cycle, bi, offered, extra, started, done = 0, 0, False, 0, 0, 0
        while len(beats) < n_out or extra < tail:
            if cycle >= max_cycles:
                raise TimeoutError(f"{len(beats)}/{n_out} beats after {cycle} cycles")
            if (not offered and bi < len(flat) and (bi < n_timed or rng.random() >= idle)
                    and (limit is None or bi not in firsts or started - done < limit)):
                ctx.set(ipay, pack(ishape, flat[bi]))
                offered = True
            ctx.set(ist.valid, int(offered))
            rdy = len(beats) < n_timed or len(beats) >= n_out or rng.random() >= bp
            ctx.set(ost.ready, int(rdy))
            _, _, iready, ovalid, obits = await ctx.tick().sample(ist.ready, ost.valid, opay)
            if offered and iready:
                in_c.append(cycle)
                started += bi in firsts
                bi += 1
                offered = False
            if checker.sample(ovalid, rdy, obits):
                beat = unpack(oshape, obits)
                beats.append(beat)
                out_c.append(cycle)
                done += beat["last"]
            if len(beats) >= n_out:
                extra += 1
            cycle += 1

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    checker.complete()
    assert len(in_c) == len(flat)
    return beats, in_c, out_c


def check_timing(unit, lengths: list[int], reps: int, in_c: list[int], out_c: list[int]) -> int:
    """The full-rate prefix of ``reps`` rows of each length in ``lengths``, the unit idle before
    it: ``row_cycles`` of the first row, ``row_interval`` between the first beats of the group's
    last ``reps // 2`` rows (the earlier ones fill the unit: the input runs ahead of the slowest
    stage until the rows in flight stall it), and that these rows overlap (a row's first beat is
    taken before the previous row's last result). Returns the intervals checked."""
    starts = np.cumsum([0] + [n for n in lengths for _ in range(reps)])
    assert out_c[starts[1] - 1] - in_c[0] + 1 == unit.row_cycles(lengths[0])
    checked = 0
    for g, n in enumerate(lengths):
        for r in range(g * reps + reps - reps // 2, (g + 1) * reps):
            first, prev = in_c[starts[r]], in_c[starts[r - 1]]
            assert first - prev == unit.row_interval(n), (r, n, first - prev, unit.row_interval(n))
            assert first < out_c[starts[r] - 1], (r, n, "row did not overlap the previous one")
            checked += 1
    return checked


def check_latency_and_flight(unit, make_row, to_beats, golden, field: str, max_len: int) -> int:
    """``row_cycles(n)`` for every ``n`` (one row outstanding at a time: each enters an idle
    unit), and ``rows_in_flight(n)``: with that many rows outstanding, back-to-back rows reach
    ``row_interval(n)``; with one fewer they do not. Every output is compared. Returns the
    timings checked."""
    rows = [make_row(n) for n in range(1, max_len + 1)]
    beats, in_c, out_c = simulate(unit, [to_beats(r) for r in rows], timed_rows=len(rows), idle=0,
                                  bp=0, seed=0, tail=16, limit=1)
    check_rows(f"{field}.latency", field, [golden(r) for r in rows], beats)
    starts = np.cumsum([0] + [len(r[0]) for r in rows])
    for r, n in enumerate(range(1, max_len + 1)):
        assert out_c[starts[r + 1] - 1] - in_c[starts[r]] + 1 == unit.row_cycles(n), n
    checked = len(rows)
    reps = 12
    for n in sorted({1, 2, max_len // 2, max_len}):
        k = unit.rows_in_flight(n)
        assert k >= 2, f"n = {n}: back-to-back rows do not overlap"
        for lim in (k, k - 1):
            grp = [make_row(n) for _ in range(reps)]
            beats, in_c, _ = simulate(unit, [to_beats(r) for r in grp], timed_rows=reps, idle=0,
                                      bp=0, seed=0, tail=16, limit=lim)
            check_rows(f"{field}.flight", field, [golden(r) for r in grp], beats)
            iv = np.diff([in_c[i * n] for i in range(reps)])[-4:]
            if lim == k:
                assert (iv == unit.row_interval(n)).all(), (n, lim, iv, unit.row_interval(n))
            else:
                assert iv.mean() > unit.row_interval(n), (n, lim, iv, unit.row_interval(n))
            checked += 1
    return checked


def overlapped_rows(lengths: list[int], in_c: list[int], out_c: list[int]) -> int:
    """Rows whose first beat was taken before the previous row's last result."""
    starts = np.cumsum([0, *lengths])
    return sum(in_c[starts[r]] < out_c[starts[r] - 1] for r in range(1, len(lengths)))


LN_PY = dict(max_dim=12, x_width=10, gamma_width=18, beta_width=12, e_width=8)


TIMED_LENGTHS = (1, 2, 7, 12, 3)
TIMED_REPS = 8


def ln_row(rng: np.random.Generator, n: int, E: int = 5):
    return (rng.integers(-511, 512, n), rng.integers(-(1 << 17), 1 << 17, n),
            rng.integers(-2048, 2048, n), E)


@pytest.mark.sim
def test_pysim_layernorm_rows():
    """400 rows through one elaboration: corner kinds, D = 1 .. max_dim, E = 1 and max; a
    full-rate prefix of back-to-back rows checks the timing formulas."""
    K, P = 16, 10
    unit = RowLayerNorm(**LN_PY, K=K, P=P)
    rng = np.random.default_rng(11)
    timed = [ln_row(rng, n) for n in TIMED_LENGTHS for _ in range(TIMED_REPS)]
    rows = timed + ln_rows(rng, 400, **LN_PY)
    beats, in_c, out_c = simulate(unit, [ln_beats(r) for r in rows], timed_rows=len(timed),
                                  idle=0.3, bp=0.4, seed=5)
    n = check_rows("rownorm.layernorm", "y", [ln_golden(r, K, P) for r in rows], beats)
    assert n >= sum(len(r[0]) for r in rows) > 400
    checked = check_timing(unit, list(TIMED_LENGTHS), TIMED_REPS, in_c, out_c)
    assert checked == len(TIMED_LENGTHS) * (TIMED_REPS // 2)


def ln_bounds(unit: RowLayerNorm, d: int) -> str:
    """The stages whose bound is ``row_interval(d)``: Front, Normalise pass, Square root."""
    terms = (d + unit.load_latency + unit.rad_latency + 1, d + unit.norm_gap, unit.sqrt_cycles + 2)
    return "".join(k for k, t in zip("FNS", terms, strict=True) if t == unit.row_interval(d))


@pytest.mark.sim
@pytest.mark.parametrize("cfg,stages", [
    (LN_PY, {"N"}),
    # wide x, narrow Γ: a long square root, a short divider
    (dict(max_dim=20, x_width=20, gamma_width=4, beta_width=4, e_width=8), {"S", "FS", "F"}),
])
def test_pysim_layernorm_timing(cfg, stages):
    """``row_cycles`` for every D, ``rows_in_flight`` (see check_latency_and_flight), with each
    stage's bound of ``row_interval`` the binding one for some D."""
    K, P = 16, 10
    unit = RowLayerNorm(**cfg, K=K, P=P)
    rng = np.random.default_rng(13)
    xh, gh, bh = (1 << (cfg[k] - 1) for k in ("x_width", "gamma_width", "beta_width"))

    def row(d: int):
        return (rng.integers(-xh, xh, d), rng.integers(-gh, gh, d), rng.integers(-bh, bh, d), 3)

    assert {ln_bounds(unit, d) for d in range(1, cfg["max_dim"] + 1)} == stages
    n = check_latency_and_flight(unit, row, ln_beats, lambda r: ln_golden(r, K, P), "y",
                                 cfg["max_dim"])
    assert n == cfg["max_dim"] + 8


@pytest.mark.sim
@pytest.mark.parametrize("bp", [0.5, 0.85])
def test_pysim_layernorm_backpressure(bp):
    """Input always valid, output back-pressure: the rows pile up in the unit (several in
    flight, the front writing over a half still being normalised); nothing is lost, duplicated
    or reordered (every beat compared in order, the last flags included)."""
    K, P = 16, 10
    unit = RowLayerNorm(**LN_PY, K=K, P=P)
    rng = np.random.default_rng(14)
    rows = ln_rows(rng, 200, **LN_PY)
    beats, in_c, out_c = simulate(unit, [ln_beats(r) for r in rows], timed_rows=0, idle=0.0, bp=bp,
                                  seed=9)
    assert check_rows("rownorm.layernorm", "y", [ln_golden(r, K, P) for r in rows], beats) > 200
    assert overlapped_rows([len(r[0]) for r in rows], in_c, out_c) > 100


@pytest.mark.sim
def test_pysim_layernorm_k_equals_p():
    """``K = P`` (no final shift): every floor-division rounding reaches the output; E up to
    2^16 − 1; heavy back-pressure."""
    cfg = dict(max_dim=5, x_width=6, gamma_width=8, beta_width=3, e_width=16)
    unit = RowLayerNorm(**cfg, K=4, P=4)
    rows = ln_rows(np.random.default_rng(12), 150, **cfg)
    beats, _, _ = simulate(unit, [ln_beats(r) for r in rows], timed_rows=0, idle=0.1, bp=0.7, seed=6)
    assert check_rows("rownorm.layernorm", "y", [ln_golden(r, 4, 4) for r in rows], beats) > 150


SM_PY = dict(max_n=12, z_width=10, c_width=20)
SM_C = 1 << 14   # a typical C for a 10-bit score (d·C >> 16 spans the LUT and the shifts)


@pytest.mark.sim
def test_pysim_softmax_rows():
    """400 rows through one elaboration: ties, equal rows, n = 1, 2^x underflow, C = 0 and
    max C, extremes; a full-rate prefix checks the timing formulas."""
    G, H, F, P = 6, 16, 15, 12
    unit = RowSoftmax(**SM_PY, G=G, H=H, F=F, P=P)
    rng = np.random.default_rng(21)
    timed = [(rng.integers(-511, 512, n), SM_C) for n in TIMED_LENGTHS for _ in range(TIMED_REPS)]
    rows = timed + sm_rows(rng, 400, **SM_PY, typical_c=SM_C)
    beats, in_c, out_c = simulate(unit, [sm_beats(r) for r in rows], timed_rows=len(timed),
                                  idle=0.3, bp=0.4, seed=7)
    exp = [sm_golden(r, G, H, F, P) for r in rows]
    assert any((e == 0).any() for e in exp), "no 2^x underflow in the stimulus"
    assert any((e == 1 << P).any() for e in exp), "no p = 2^P in the stimulus"
    n = check_rows("rownorm.softmax", "p", exp, beats)
    assert n >= sum(len(r[0]) for r in rows) > 400
    checked = check_timing(unit, list(TIMED_LENGTHS), TIMED_REPS, in_c, out_c)
    assert checked == len(TIMED_LENGTHS) * (TIMED_REPS // 2)


@pytest.mark.sim
@pytest.mark.parametrize("cfg,divide_bound", [
    (dict(G=6, H=16, F=15, P=20), True),
    (dict(G=6, H=16, F=5, P=1), False),
])
def test_pysim_softmax_timing(cfg, divide_bound):
    """``row_cycles`` for every n, ``rows_in_flight`` (see check_latency_and_flight), with the
    divide pass as the slowest stage (``P = 20``) and with the exponent pass, which writes
    behind the divide pass's reads of the previous row (``P = 1``)."""
    unit = RowSoftmax(**SM_PY, **cfg)
    rng = np.random.default_rng(23)
    assert (unit.div_gap > unit.exp_latency + 2) == divide_bound
    n = check_latency_and_flight(unit, lambda k: (rng.integers(-511, 512, k), SM_C), sm_beats,
                                 lambda r: sm_golden(r, **cfg), "p", SM_PY["max_n"])
    assert n == SM_PY["max_n"] + 8


@pytest.mark.sim
@pytest.mark.parametrize("bp", [0.5, 0.85])
def test_pysim_softmax_backpressure(bp):
    """Input always valid, output back-pressure: rows pile up in the three passes (each pass
    writing behind the next pass's reads); nothing is lost, duplicated or reordered."""
    G, H, F, P = 6, 16, 15, 12
    unit = RowSoftmax(**SM_PY, G=G, H=H, F=F, P=P)
    rows = sm_rows(np.random.default_rng(24), 200, **SM_PY, typical_c=SM_C)
    beats, in_c, out_c = simulate(unit, [sm_beats(r) for r in rows], timed_rows=0, idle=0.0, bp=bp,
                                  seed=10)
    assert check_rows("rownorm.softmax", "p", [sm_golden(r, G, H, F, P) for r in rows], beats) > 200
    assert overlapped_rows([len(r[0]) for r in rows], in_c, out_c) > 100


@pytest.mark.sim
def test_pysim_softmax_small_params():
    """``G = 0`` (one LUT entry), ``H = 0``, small ``F`` and ``P``, heavy back-pressure."""
    cfg = dict(max_n=4, z_width=4, c_width=3)
    G, H, F, P = 0, 0, 3, 2
    unit = RowSoftmax(**cfg, G=G, H=H, F=F, P=P)
    rows = sm_rows(np.random.default_rng(22), 120, **cfg, typical_c=2)
    beats, _, _ = simulate(unit, [sm_beats(r) for r in rows], timed_rows=0, idle=0.2, bp=0.7, seed=8)
    assert check_rows("rownorm.softmax", "p", [sm_golden(r, G, H, F, P) for r in rows], beats) > 120


def test_layernorm_widths():
    """Every internal width covers its worst case (the bound of model/widths.py for y)."""
    from equispike.model.widths import layernorm_output_bound, signed_bits

    u = RowLayerNorm(**LN_PY)
    bound = layernorm_output_bound(12, 1 << 17, 1 << 11, LayerNormParams(E=1, K=16, P=10))
    assert u.y_width == signed_bits(-bound, bound)
    assert u.o_stream.payload.shape()["y"].shape == signed(u.y_width)
    xmin = -(1 << 9)
    assert u.rad_width >= (12 * 12 * xmin * xmin + 255).bit_length()


def signed(w):
    from amaranth.hdl import signed as s

    return s(w)


@pytest.mark.parametrize("cls,kw,exc,match", [
    (RowLayerNorm, dict(max_dim=0), ValueError, "max_dim"),
    (RowLayerNorm, dict(max_dim=4.0), TypeError, "max_dim"),
    (RowLayerNorm, dict(x_width=1), ValueError, "x_width"),
    (RowLayerNorm, dict(gamma_width="8"), TypeError, "gamma_width"),
    (RowLayerNorm, dict(beta_width=0), ValueError, "beta_width"),
    (RowLayerNorm, dict(e_width=0), ValueError, "e_width"),
    (RowLayerNorm, dict(K=41, P=10), ValueError, "K"),
    (RowLayerNorm, dict(K=8, P=9), ValueError, "P must be <= K"),
    (RowLayerNorm, dict(P=-1), ValueError, "P"),
    (RowLayerNorm, dict(K=True), TypeError, "K"),
    (RowSoftmax, dict(max_n=4097), ValueError, "max_n"),
    (RowSoftmax, dict(z_width=None), TypeError, "z_width"),
    (RowSoftmax, dict(c_width=0), ValueError, "c_width"),
    (RowSoftmax, dict(G=13), ValueError, "G"),
    (RowSoftmax, dict(H=41), ValueError, "H"),
    (RowSoftmax, dict(F=0), ValueError, "F"),
    (RowSoftmax, dict(P=31), ValueError, "P"),
])
def test_constructor_errors(cls, kw, exc, match):
    base = dict(LN_PY) if cls is RowLayerNorm else dict(SM_PY)
    base.update(kw)
    with pytest.raises(exc, match=match):
        cls(**base)


def test_row_cycles_argument():
    u = RowSoftmax(**SM_PY)
    with pytest.raises(ValueError, match="n must be"):
        u.row_cycles(SM_PY["max_n"] + 1)
    assert u.row_cycles(2) - u.row_cycles(1) == 3
    assert RowLayerNorm(**LN_PY).row_cycles(2) - RowLayerNorm(**LN_PY).row_cycles(1) == 2


@pytest.mark.sim
def test_pysim_overlong_row_asserts():
    """A row longer than ``max_dim`` is a protocol error caught by the simulation assert."""
    unit = RowLayerNorm(**dict(LN_PY, max_dim=3))
    row = ln_beats((np.arange(4), np.ones(4, dtype=np.int64), np.zeros(4, dtype=np.int64), 1))
    with pytest.raises(AssertionError, match="row longer than max_dim"):
        simulate(unit, [row], timed_rows=1, idle=0.0, bp=0.0, seed=0, max_cycles=200)


# --------------------------------------------------------------------------------------------------
# cocotb testbenches (Verilator): one build per unit, random rows with idle cycles and back-pressure
# --------------------------------------------------------------------------------------------------
LN_VL = dict(max_dim=48, x_width=16, gamma_width=18, beta_width=16, e_width=20)
LN_VL_KP = (16, 10)
SM_VL = dict(max_n=40, z_width=16, c_width=24)
SM_VL_PARAMS = dict(G=6, H=16, F=15, P=12)
SM_VL_C = 1 << 10   # d·C >> 16 spans the LUT and the shifts for 16-bit scores


def vl_rows(kind: str, seed: int, count: int):
    rng = np.random.default_rng(seed)
    if kind == "layernorm":
        return ln_rows(rng, count, **LN_VL)
    return sm_rows(rng, count, **SM_VL, typical_c=SM_VL_C)


async def _contract_monitor(dut, errors: list):
    """RFC 61 on ``o_stream`` every cycle: valid held and payload stable until ready."""
    from cocotb.triggers import FallingEdge

    from equispike.sim.streams import as_int

    held = None
    while True:
        await FallingEdge(dut.clk)
        v, r = as_int(dut.o_stream__valid.value), as_int(dut.o_stream__ready.value)
        bits = as_int(dut.o_stream__payload.value) if v else None
        if held is not None and (not v or bits != held):
            errors.append(f"o_stream contract broken: valid={v}, payload {bits} vs held {held}")
        held = bits if v and not r else None


@cocotb.test()
@cocotb.parametrize(flow=[(0.0, 0.0), (0.3, 0.5)])
async def rownorm_stream(dut, flow):
    """Random rows (corner kinds first) vs the golden operator, every beat checked."""
    from cocotb.triggers import ClockCycles

    from equispike.sim import tb_config
    from equispike.sim.norm_support import start_clock_and_reset
    from equispike.sim.streams import StreamDriver, StreamMonitor

    cfg = tb_config()
    kind = cfg["kind"]
    if kind == "layernorm":
        unit = RowLayerNorm(**LN_VL, K=LN_VL_KP[0], P=LN_VL_KP[1])
        rows = vl_rows(kind, cfg["seed"], cfg["rows"])
        beats_in = [ln_beats(r) for r in rows]
        exp = [ln_golden(r, *LN_VL_KP) for r in rows]
        field = "y"
    else:
        unit = RowSoftmax(**SM_VL, **SM_VL_PARAMS)
        rows = vl_rows(kind, cfg["seed"], cfg["rows"])
        beats_in = [sm_beats(r) for r in rows]
        exp = [sm_golden(r, **SM_VL_PARAMS) for r in rows]
        field = "p"
    await start_clock_and_reset(dut)
    errors: list = []
    cocotb.start_soon(_contract_monitor(dut, errors))
    drv = StreamDriver(dut, dut.clk, "i_stream", unit.i_stream.payload.shape(), idle_prob=flow[0],
                       seed=cfg["seed"])
    mon = StreamMonitor(dut, dut.clk, "o_stream", unit.o_stream.payload.shape(),
                        backpressure_prob=flow[1], seed=cfg["seed"] + 1)
    for r in beats_in:
        for b in r:
            drv.send(b)
    n_exp = sum(len(e) for e in exp)
    await mon.wait_for(n_exp)
    await ClockCycles(dut.clk, 64)
    assert mon.received == n_exp, f"{mon.received} beats received, {n_exp} expected"
    assert not errors, errors[0]
    n = check_rows(f"rownorm.{kind}", field, exp, list(mon.items))
    dut._log.info("rownorm %s flow=%s: %d rows, %d elements compared, 0 mismatches", kind, flow,
                  len(rows), n)
    drv.stop()
    mon.stop()


@pytest.mark.sim
@pytest.mark.parametrize("kind", ["layernorm", "softmax"])
def test_rownorm_verilator(request, kind):
    """The ECP5 form of the multipliers (``MULT18X18D`` instances on our model; the Amaranth
    simulator tests above cover the generic form) with the protocol assert compiled in."""
    from equispike.rtl._dsp import ECP5_SIM_BUILD_ARGS
    from equispike.sim import build_dir_for, run_cocotb
    from equispike.sim.build import MODELS_DIR

    if kind == "layernorm":
        unit = RowLayerNorm(**LN_VL, K=LN_VL_KP[0], P=LN_VL_KP[1], dsp_target="ecp5")
    else:
        unit = RowSoftmax(**SM_VL, **SM_VL_PARAMS, dsp_target="ecp5")
    run_cocotb(unit, test_module="equispike.tests.test_rownorm",
               build_dir=build_dir_for(request.node.nodeid),
               config={"kind": kind, "seed": 31, "rows": 300},
               extra_sources=[MODELS_DIR / "MULT18X18D.v"],
               extra_build_args=(*ECP5_SIM_BUILD_ARGS, "--assert"))
