import { convertV4MiniflareOptions, Miniflare } from "miniflare";

const mf = new Miniflare(
  convertV4MiniflareOptions({
    workers: [
      {
        name: "w",
        modules: true,
        compatibilityDate: "2025-01-01",
        durableObjects: { O: { className: "O", useSQLite: true } },
        script: `
import { DurableObject } from "cloudflare:workers";
export class O extends DurableObject {
  run() {
    const sql = this.ctx.storage.sql;
    const out = {};
    const c = (name, q, ...b) => { const cur = sql.exec(q, ...b); cur.toArray(); out[name] = [cur.rowsRead, cur.rowsWritten]; };
    c("create_rowid", "CREATE TABLE a (request_id TEXT PRIMARY KEY, v INTEGER, created_at INTEGER)");
    c("create_index", "CREATE INDEX a_created ON a(created_at)");
    c("insert_rowid_pk_idx", "INSERT INTO a VALUES ('x1', 1, 5)");
    c("create_worowid", "CREATE TABLE b (request_id TEXT PRIMARY KEY, v INTEGER, created_at INTEGER) WITHOUT ROWID");
    c("insert_worowid", "INSERT INTO b VALUES ('x1', 1, 5)");
    for (let i = 0; i < 100; i++) sql.exec("INSERT INTO b VALUES (?, 1, 5)", "y" + i);
    c("update_worowid", "UPDATE b SET v = 2 WHERE request_id = 'x1'");
    c("drop_worowid_101", "DROP TABLE b");
    c("create_c", "CREATE TABLE c (request_id TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID");
    for (let i = 0; i < 100; i++) sql.exec("INSERT INTO c VALUES (?, 1)", "y" + i);
    c("delete_all_c_100", "DELETE FROM c");
    c("create_d", "CREATE TABLE d (request_id TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID");
    for (let i = 0; i < 1000; i++) sql.exec("INSERT INTO d VALUES (?, 1)", "y" + i);
    c("drop_d_1000", "DROP TABLE d");
    c("upsert_conflict", "INSERT INTO a VALUES ('x1', 1, 5) ON CONFLICT(request_id) DO UPDATE SET v = v + 1");
    return out;
  }
}
export default { async fetch(req, env) { return Response.json(await env.O.get(env.O.idFromName("x")).run()); } };`,
      },
    ],
  }),
);
console.log(JSON.stringify(await (await mf.dispatchFetch("http://x/")).json(), null, 1));
await mf.dispose();
