// node-postgres (npm "pg") through cratebouncer, run by test_transaction_clients.py:
//   node node_pg_pool.js PORT QUERIES CLIENTS
// A pg.Pool of CLIENTS connections (all opened at once) runs QUERIES parameterized queries
// concurrently, each twice: unnamed (extended protocol) and as the named prepared statement
// "add-one" (parsed once per connection, then only bound); then CLIENTS concurrent
// transactions insert two rows each into tx_node and read them back before COMMIT.
// Prints one JSON object on stdout; any error exits 1 with the stack on stderr.
'use strict';
const { Pool } = require('pg');

const port = parseInt(process.argv[2], 10);
const queries = parseInt(process.argv[3] || '300', 10);
const clients = parseInt(process.argv[4] || '30', 10);

async function main() {
  const pool = new Pool({
    host: '127.0.0.1', port, user: 'crate', database: 'doc', password: '',
    max: clients, connectionTimeoutMillis: 30000, idleTimeoutMillis: 0,
  });
  const out = { opened: 0, plain: [], named: [], tx: [], pids: [] };

  // Every client connection logged in at the same time: more clients than the pool's servers.
  const held = await Promise.all(Array.from({ length: clients }, () => pool.connect()));
  out.opened = held.length;
  held.forEach((c) => c.release());

  await Promise.all(Array.from({ length: queries }, async (_, i) => {
    const r = await pool.query(
      "SELECT $1::int * $2::int AS p, $3::text || '!' AS s, pg_backend_pid() AS pid",
      [i, 7, `v${i}`]);
    out.plain.push([i, r.rows[0].p, r.rows[0].s]);
    out.pids.push(r.rows[0].pid);
    const q = await pool.query({ name: 'add-one', text: 'SELECT $1::int + 1 AS n', values: [i] });
    out.named.push([i, q.rows[0].n]);
  }));

  await Promise.all(Array.from({ length: clients }, async (_, i) => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      await c.query('INSERT INTO tx_node (client, v) VALUES ($1, $2), ($1, $3)',
        [i, i * 10, i * 10 + 1]);
      const r = await c.query(
        'SELECT count(*)::int AS n, sum(v)::int AS s FROM tx_node WHERE client = $1', [i]);
      await c.query('COMMIT');
      out.tx.push([i, r.rows[0].n, r.rows[0].s]);
    } finally {
      c.release();
    }
  }));

  await pool.end();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write((e && e.stack) || String(e));
  process.stderr.write('\n');
  process.exit(1);
});
