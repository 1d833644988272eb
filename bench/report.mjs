// Tables of the load benchmark (bench/run.mjs measures, this writes): the median over rounds
// per layout, part, system and connection count; the issue's targets marked met or missed per
// core layout; report.md and runs.csv. Pure functions of the recorded results, so a report can
// be rebuilt from a results.json.
import fs from 'node:fs';

/// The p-th percentile (nearest rank) of `xs`; 0 for none.
export const pct = (xs, p) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const median = (xs) => pct(xs, 50);

/// How a layout is named in the report.
export const layoutTitle = (l, cpus) => (l === 'separate'
  ? `Separate cores (servers on CPU ${cpus.server}, wrk on CPU ${cpus.load})`
  : 'Shared cores (no pinning)');

/// One row per layout, part, system and connection count: medians over rounds, errors summed,
/// peak RSS the maximum.
export function summarize(runs) {
  const groups = new Map();
  for (const r of runs) {
    const k = `${r.layout}|${r.part}|${r.system}|${r.conns}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(r);
  }
  return [...groups.values()].map((rs) => {
    const procs = Object.keys(rs[0].peak_rss_kb);
    return {
      layout: rs[0].layout, part: rs[0].part, system: rs[0].system, conns: rs[0].conns, rounds: rs.length,
      rps: median(rs.map((r) => r.rps)),
      p50_ms: median(rs.map((r) => r.p50_ms)),
      p99_ms: median(rs.map((r) => r.p99_ms)),
      errors: rs.reduce((s, r) => s + r.errors, 0),
      requests: rs.reduce((s, r) => s + r.requests, 0),
      peak_rss_mb: Object.fromEntries(procs.map((p) => [p, Math.max(...rs.map((r) => r.peak_rss_kb[p])) / 1024])),
      cpu_us_per_req: Object.fromEntries(procs.map((p) => [p, median(rs.map((r) => r.cpu_us_per_req[p]))])),
    };
  });
}

const bad = (x) => x === undefined || x === null || Number.isNaN(x) || !Number.isFinite(x);
const f0 = (x) => (bad(x) ? '–' : x.toFixed(0));
const f1 = (x) => (bad(x) ? '–' : x.toFixed(1));
const f2 = (x) => (bad(x) ? '–' : x.toFixed(2));
const f3 = (x) => (bad(x) ? '–' : x.toFixed(3));
const mb = (kb) => f1(kb / 1024);

const TARGET_CONNS = [1, 16, 64, 256];
const RSS_LIMIT_MB = 30;

/// The issue's targets on layout `l`: `{ target, measured, verdict }` rows, the verdict `met`,
/// `missed` or `not measured`. A per-connection-count target is met when it holds at every
/// count measured; counts the run did not measure are named.
export function targets(res, l) {
  const get = (part, system, conns) => res.summary.find((s) => s.layout === l && s.part === part && s.system === system && s.conns === conns);
  const rows = [];
  /// `each(c)` -> `{ value, ok, text? }` or null (not measured at c).
  const perConns = (target, conns, each, fmt = f2) => {
    const got = conns.map((c) => [c, each(c)]).filter(([, v]) => v && !bad(v.value));
    const missing = conns.filter((c) => !got.some(([g]) => g === c));
    if (!got.length) return rows.push({ target, measured: '–', verdict: 'not measured' });
    const measured = `${got.map(([, v]) => v.text || fmt(v.value)).join(' / ')} at ${got.map(([c]) => c).join(' / ')} conns${missing.length ? ` (not measured at ${missing.join(', ')})` : ''}`;
    return rows.push({ target, measured, verdict: got.every(([, v]) => v.ok) ? 'met' : 'missed' });
  };
  const ratio = (a, b, pick, limit, atLeast) => {
    if (!a || !b) return null;
    const v = pick(a) / pick(b);
    return { value: v, ok: atLeast ? v >= limit : v <= limit };
  };
  perConns('`/auth` valid session ≥ 0.85× bare axum req/s', TARGET_CONNS,
    (c) => ratio(get('1', 'sidecar', c), get('1', 'bare axum', c), (s) => s.rps, 0.85, true));
  perConns('sidecar server CPU µs/req ≤ 1.2× bare axum\'s', TARGET_CONNS,
    (c) => ratio(get('1', 'sidecar', c), get('1', 'bare axum', c), (s) => s.cpu_us_per_req.server, 1.2, false));
  perConns('sidecar p99 ≤ 1.2× bare axum p99', TARGET_CONNS,
    (c) => ratio(get('1', 'sidecar', c), get('1', 'bare axum', c), (s) => s.p99_ms, 1.2, false));
  perConns('3 middlewares of one scope within 10 % of the single cookie case (req/s, ≥ 0.90×)', TARGET_CONNS,
    (c) => ratio(get('1', 'sidecar 3-mw scope', c), get('1', 'sidecar', c), (s) => s.rps, 0.9, true));
  perConns('Redis mode within 10 % of cookie mode (req/s, ≥ 0.90×)', TARGET_CONNS,
    (c) => ratio(get('1', 'sidecar redis', c), get('1', 'sidecar', c), (s) => s.rps, 0.9, true));
  perConns('Traefik plugin door added p50 (door − no auth) ≤ forwardAuth\'s at 16 and 64 conns, ≤ 1.1× at 1', [1, 16, 64], (c) => {
    const n = get('3', 'traefik no auth', c);
    const fa = get('3', 'traefik forwardAuth', c);
    const pl = get('3', 'traefik plugin shim', c);
    if (!n || !fa || !pl) return null;
    const a = pl.p50_ms - n.p50_ms;
    const b = fa.p50_ms - n.p50_ms;
    const limit = c === 1 ? 1.1 : 1;
    // Compared as differences, so a forwardAuth figure at or below zero still gives a verdict.
    return { value: a, ok: a <= limit * b, text: `${f3(a)} vs ${f3(b)} ms (${b > 0 ? `${f2(a / b)}×` : 'ratio –'})` };
  });
  const p4 = res.part4;
  if (l !== 'separate' || !p4 || p4.skipped) {
    rows.push({ target: `RSS ≤ ${RSS_LIMIT_MB} MB after 100 000 distinct sessions`, measured: '–', verdict: l === 'separate' ? `not measured (${p4?.skipped || 'Part 4 not run'})` : 'not measured (Part 4 runs on separate cores only)' });
  } else {
    const hwm = Math.max(...p4.rows.map((r) => r.hwm_kb)) / 1024;
    const last = p4.rows[p4.rows.length - 1];
    const n = p4.sessions;
    rows.push({
      target: `RSS ≤ ${RSS_LIMIT_MB} MB after 100 000 distinct sessions`,
      measured: `VmHWM ${f1(hwm)} MB, VmRSS ${mb(last.rss_kb)} MB after ${n.toLocaleString('en')} distinct sessions and a second pass${n < 100000 ? ` (only ${n.toLocaleString('en')} sessions: not the target's 100 000)` : ''}`,
      verdict: n < 100000 ? 'not measured (too few sessions)' : (hwm <= RSS_LIMIT_MB && p4.errors === 0 ? 'met' : 'missed'),
    });
  }
  return rows;
}

/// report.md.
export function report(res) {
  const { meta, P, summary, logins, part3, part4 } = res;
  const L = [];
  const get = (l, part, system, conns) => summary.find((s) => s.layout === l && s.part === part && s.system === system && s.conns === conns);
  const procCols = (s) => Object.entries(s.peak_rss_mb).map(([p, v]) => `${p} ${f1(v)}`).join(', ');
  const cpuCols = (s) => Object.entries(s.cpu_us_per_req).map(([p, v]) => `${p} ${f1(v)}`).join(', ');
  const threads = (l) => {
    const t = meta.wrk_threads[l];
    const byCount = [...new Set(Object.values(t))];
    return byCount.length === 1 ? `${byCount[0]}` : `1 at c=1, else ${Math.max(...byCount)}`;
  };
  L.push(`Run: ${meta.when} · mode ${meta.smoke ? 'SMOKE (tiny durations: numbers are not meaningful)' : 'full'} · ${P.rounds} round(s) × ${P.dur} s per run, systems interleaved, median over rounds · load average (1/5/15 min) at start ${meta.load_start.join(' / ')}, at end ${meta.load_end.join(' / ')}, range of 1-min load during runs ${meta.load_min.toFixed(2)}–${meta.load_max.toFixed(2)}`);
  L.push('');
  L.push(`Layouts, measured in this order in one run, every server process restarted per layout (logins once): ${meta.layouts.map((l) => `**${layoutTitle(l, meta.cpus)}**, wrk threads: ${threads(l)}${l === 'separate' ? ' (one per load core); the OP and the driver on the load CPUs too' : ''}`).join('; then ')}.`);
  if (meta.cookies) L.push(`Cookie header bytes: sidecar ${meta.cookies.sidecar_cookie_header_bytes}, sidecar 3-mw scope ${meta.cookies.sidecar_scope_cookie_header_bytes}, sidecar Redis mode ${meta.cookies.sidecar_redis_cookie_header_bytes}, oauth2-proxy ${meta.cookies.oauth2_proxy_cookie_header_bytes}, oauth2-proxy Redis store ${meta.cookies.oauth2_proxy_redis_cookie_header_bytes}.`);
  L.push('');

  for (const l of meta.layouts) {
    L.push(l === 'separate' ? '### Targets (separate cores)' : `### Targets computed on ${l} cores (informative)`);
    L.push('');
    L.push('| target | measured | verdict |');
    L.push('|---|---|---|');
    for (const t of res.targets[l]) L.push(`| ${t.target} | ${t.measured} | ${t.verdict} |`);
    L.push('');
  }

  for (const l of meta.layouts) {
    L.push(`## ${layoutTitle(l, meta.cpus)}`);
    L.push('');
    L.push('### Part 1: `/auth` with a valid session');
    L.push('');
    L.push('| conns | system | req/s | p50 ms | p99 ms | errors | peak RSS MB | server CPU µs/req |');
    L.push('|---:|---|---:|---:|---:|---:|---:|---:|');
    for (const c of P.conns) {
      for (const sys of ['sidecar', 'sidecar 3-mw scope', 'sidecar redis', 'oauth2-proxy', 'oauth2-proxy redis', 'bare axum']) {
        const s = get(l, '1', sys, c);
        if (s) L.push(`| ${c} | ${sys} | ${f0(s.rps)} | ${f3(s.p50_ms)} | ${f3(s.p99_ms)} | ${s.errors} | ${procCols(s)} | ${cpuCols(s)} |`);
      }
    }
    L.push('');
    L.push('| conns | sidecar / bare axum (req/s) | sidecar p99 / bare axum p99 | sidecar CPU/req ÷ bare axum CPU/req | sidecar / oauth2-proxy (req/s) | oauth2-proxy p99 / sidecar p99 | oauth2-proxy CPU/req ÷ sidecar CPU/req |');
    L.push('|---:|---:|---:|---:|---:|---:|---:|');
    for (const c of P.conns) {
      const sc = get(l, '1', 'sidecar', c);
      const o = get(l, '1', 'oauth2-proxy', c);
      const b = get(l, '1', 'bare axum', c);
      if (!sc || !o || !b) continue;
      L.push(`| ${c} | ${f2(sc.rps / b.rps)} | ${f2(sc.p99_ms / b.p99_ms)} | ${f2(sc.cpu_us_per_req.server / b.cpu_us_per_req.server)} | ${f2(sc.rps / o.rps)} | ${f2(o.p99_ms / sc.p99_ms)} | ${f2(o.cpu_us_per_req.server / sc.cpu_us_per_req.server)} |`);
    }
    L.push('');
    L.push('Beside the single-middleware cookie case (`sidecar`, `/auth/default`): three middlewares of one scope (`scope-admins` with `AssertClaims` on groups checked on every request, `scope-headers` with two `Headers` templates, `scope-plain`; one session, each wrk request to the next of the three), and Redis mode (`SessionStorageType: Redis`, one local redis-server; the sidecar\'s CPU column counts the sidecar only). Target: within 10 % (≥ 0.90×).');
    L.push('');
    L.push('| conns | 3-mw scope / single (req/s) | 3-mw p99 / single p99 | 3-mw CPU/req ÷ single | Redis / cookie (req/s) | Redis p99 / cookie p99 | Redis CPU/req ÷ cookie | sidecar Redis / oauth2-proxy Redis (req/s) |');
    L.push('|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const c of P.conns) {
      const sc = get(l, '1', 'sidecar', c);
      const m3 = get(l, '1', 'sidecar 3-mw scope', c);
      const sr = get(l, '1', 'sidecar redis', c);
      const or = get(l, '1', 'oauth2-proxy redis', c);
      if (!sc || (!m3 && !sr)) continue;
      const r = (a, k) => (a ? f2(k(a) / k(sc)) : '–');
      L.push(`| ${c} | ${r(m3, (s) => s.rps)} | ${r(m3, (s) => s.p99_ms)} | ${r(m3, (s) => s.cpu_us_per_req.server)} | ${r(sr, (s) => s.rps)} | ${r(sr, (s) => s.p99_ms)} | ${r(sr, (s) => s.cpu_us_per_req.server)} | ${sr && or ? f2(sr.rps / or.rps) : '–'} |`);
    }
    L.push('');
    L.push('### Part 2a: `/auth` without a session (navigation → 302 to the OP with state, nonce, PKCE and a flow cookie)');
    L.push('');
    const unauth = P.unauthConns.map((c) => [c, get(l, '2a', 'sidecar unauthenticated', c)]).filter(([, s]) => s);
    if (!unauth.length) L.push('Not measured (BENCH_PARTS).');
    else {
      L.push('| conns | req/s | p50 ms | p99 ms | errors | peak RSS MB | server CPU µs/req |');
      L.push('|---:|---:|---:|---:|---:|---:|---:|');
      for (const [c, s] of unauth) L.push(`| ${c} | ${f0(s.rps)} | ${f3(s.p50_ms)} | ${f3(s.p99_ms)} | ${s.errors} | ${procCols(s)} | ${cpuCols(s)} |`);
    }
    L.push('');
    const p3 = part3[l] || { skipped: 'not run' };
    L.push('### Part 3: through Traefik (upstream ' + (p3.upstream || '–') + ')');
    L.push('');
    if (p3.skipped) {
      L.push(`SKIPPED: ${p3.skipped}`);
    } else {
      if (p3.plugin_skipped) L.push(`Plugin door SKIPPED: ${p3.plugin_skipped}`);
      L.push('');
      L.push('| conns | door | req/s | p50 ms | p99 ms | errors | peak RSS MB | CPU µs/req |');
      L.push('|---:|---|---:|---:|---:|---:|---:|---:|');
      for (const c of P.traefikConns) {
        for (const sys of ['traefik no auth', 'traefik forwardAuth', 'traefik plugin shim']) {
          const s = get(l, '3', sys, c);
          if (s) L.push(`| ${c} | ${sys.replace('traefik ', '')} | ${f0(s.rps)} | ${f3(s.p50_ms)} | ${f3(s.p99_ms)} | ${s.errors} | ${procCols(s)} | ${cpuCols(s)} |`);
        }
      }
      L.push('');
      L.push('Added latency = door − no auth, same connection count (median over rounds).');
      L.push('');
      L.push('| conns | forwardAuth added p50 ms | plugin added p50 ms | plugin ÷ forwardAuth (p50) | forwardAuth added p99 ms | plugin added p99 ms | plugin ÷ forwardAuth (p99) | Traefik CPU µs/req: no auth / forwardAuth / plugin |');
      L.push('|---:|---:|---:|---:|---:|---:|---:|---|');
      for (const c of P.traefikConns) {
        const n = get(l, '3', 'traefik no auth', c);
        const fa = get(l, '3', 'traefik forwardAuth', c);
        const pl = get(l, '3', 'traefik plugin shim', c);
        if (!n || !fa) continue;
        const fa50 = fa.p50_ms - n.p50_ms;
        const fa99 = fa.p99_ms - n.p99_ms;
        const pl50 = pl ? pl.p50_ms - n.p50_ms : NaN;
        const pl99 = pl ? pl.p99_ms - n.p99_ms : NaN;
        L.push(`| ${c} | ${f3(fa50)} | ${f3(pl50)} | ${f2(pl50 / fa50)} | ${f3(fa99)} | ${f3(pl99)} | ${f2(pl99 / fa99)} | ${f1(n.cpu_us_per_req.traefik)} / ${f1(fa.cpu_us_per_req.traefik)} / ${pl ? f1(pl.cpu_us_per_req.traefik) : '–'} |`);
      }
    }
    L.push('');
  }

  L.push(`## Part 2b: logins against the real OP (first layout: ${layoutTitle(meta.layouts[0], meta.cpus)}; Node driver, ${P.loginConc} browsers at a time; per round ${P.logins} whole logins, then ${P.callbackBatches} × ${Math.min(P.logins, 100)} callbacks with codes minted beforehand)`);
  L.push('');
  if (!logins.length) L.push('Not measured (BENCH_PARTS).');
  else {
    L.push('| kind | logins/s | sidecar redirect p50 ms | OP (authorize + form + resume) p50 ms | sidecar callback p50 ms | callback p99 ms | sidecar CPU ms/login | OP CPU ms/login | errors |');
    L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  }
  for (const kind of ['whole login', 'callback only']) {
    const xs = logins.filter((x) => x.kind === kind);
    if (!xs.length) continue;
    const m = (k) => median(xs.map((x) => x[k]).filter((v) => v !== undefined));
    L.push(`| ${kind} | ${f1(m('per_s'))} | ${kind === 'whole login' ? f2(m('sidecar_redirect_ms_p50')) : '–'} | ${kind === 'whole login' ? f2(m('op_ms_p50')) : '–'} | ${f2(m('sidecar_callback_ms_p50'))} | ${f2(m('sidecar_callback_ms_p99'))} | ${f2(m('sidecar_cpu_ms_per_login'))} | ${f2(m('op_cpu_ms_per_login'))} | ${xs.reduce((s, x) => s + x.errors, 0)} |`);
  }
  L.push('');

  L.push('## Part 4: resident memory after distinct sessions (separate cores)');
  L.push('');
  if (!part4 || part4.skipped) {
    L.push(`SKIPPED: ${part4?.skipped || 'not run'}`);
  } else {
    L.push(`A fresh sidecar (pinned like the others) gets one valid-session \`/auth/default\` request per distinct session (${part4.sessions.toLocaleString('en')} sessions minted from the benchmark login with different sub, sid and preferred_username; ${part4.conc} requests in flight from the Node driver), then a second pass over the same sessions. Every answer was checked for 200 and the session's own X-Forwarded-User: ${part4.errors} errors. The remembered-session map holds at most 4096 sessions.`);
    L.push('');
    L.push('| after | VmRSS MB | VmHWM MB | req/s (driver-bound) | server CPU µs/req |');
    L.push('|---|---:|---:|---:|---:|');
    for (const r of part4.rows) {
      const what = r.pass === 0 ? 'start (no session yet)' : r.pass === 1 ? `${r.sessions.toLocaleString('en')} distinct sessions` : `second pass over the ${r.sessions.toLocaleString('en')}`;
      L.push(`| ${what} | ${mb(r.rss_kb)} | ${mb(r.hwm_kb)} | ${r.pass ? f0(r.requests / r.secs) : '–'} | ${r.pass ? f1(r.cpu_us_per_req) : '–'} |`);
    }
  }
  L.push('');
  return L.join('\n');
}

/// runs.csv: one line per wrk run.
export function writeCsv(file, runs) {
  const cols = ['layout', 'part', 'system', 'conns', 'round', 'requests', 'rps', 'p50_ms', 'p90_ms', 'p99_ms', 'max_ms', 'errors', 'unexpected', 'socket_errors'];
  const lines = [[...cols, 'peak_rss_kb', 'cpu_us_per_req', 'load_before', 'load_after'].join(',')];
  for (const r of runs) {
    lines.push([...cols.map((c) => r[c]),
      `"${Object.entries(r.peak_rss_kb).map(([k, v]) => `${k}=${v}`).join(' ')}"`,
      `"${Object.entries(r.cpu_us_per_req).map(([k, v]) => `${k}=${v.toFixed(1)}`).join(' ')}"`,
      `"${r.load_before.join(' ')}"`, `"${r.load_after.join(' ')}"`].join(','));
  }
  fs.writeFileSync(file, lines.join('\n') + '\n');
}
