// node-postgres (npm "pg") through cratebouncer on a CrateDB upstream, run by
// test_crate_clients.py:   node node_crate_pool.js PORT QUERIES CLIENTS
// A pg.Pool of CLIENTS connections runs QUERIES parameterized queries concurrently, each
// twice (unnamed, and as the named prepared statement "rows"), every row checked against
// its own literal, and QUERIES failing queries whose error must name their own table.
// CrateDB's SQL only. Prints {"checked": N, "errors": M}; any problem exits 1.
'use strict';
const { Pool } = require('pg');

const port = parseInt(process.argv[2], 10);
const queries = parseInt(process.argv[3] || '60', 10);
const clients = parseInt(process.argv[4] || '8', 10);

async function main() {
  const pool = new Pool({
    host: '127.0.0.1', port, user: 'crate', database: 'doc', password: '',
    max: clients, connectionTimeoutMillis: 30000, idleTimeoutMillis: 0,
  });
  const out = { checked: 0, errors: 0 };
  const sql = 'SELECT $1::text AS tag, generate_series AS x FROM generate_series(1, $2::int)';
  const check = (r, tag, n) => {
    if (r.rows.length !== n || r.rows.some((row) => row.tag !== tag)) {
      throw new Error(`rows of another query for ${tag}`);
    }
    out.checked++;
  };
  await Promise.all(Array.from({ length: queries }, async (_, i) => {
    const tag = `n${i}_${Math.floor(Math.random() * 1e9)}`;
    const n = 1 + (i % 50) * 20;
    check(await pool.query(sql, [tag, n]), tag, n);
    check(await pool.query({ name: 'rows', text: sql, values: [tag, n] }), tag, n);
    try {
      await pool.query(`SELECT v FROM missing_${tag}`);
      throw new Error('no error');
    } catch (e) {
      if (!String(e.message).includes(`missing_${tag}`)) throw e;
      out.errors++;
    }
  }));
  await pool.end();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => { console.error(e && e.stack ? e.stack : e); process.exit(1); });
