import { DataTable } from "../web/components";

/** A lease as GET /admin/customers/{id}/leases lists it. */
export interface LeaseRow {
  id: string;
  isolate: string;
  granted_exact_cents: string;
  spent_exact_cents: string;
  reserve_exact_cents: string;
  rtt_ms: number;
  expires_in_ms: number;
}

export interface LeasesData {
  mode: "on" | "auto" | "off";
  reserved_exact_cents: string;
  leases: LeaseRow[];
}

/**
 * The customer's live credit leases (docs/scaling.md): what the object set aside for each
 * isolate and what that isolate has reported spent. Shown only when the customer has leases on
 * or auto, or still holds one.
 */
export function LeasesSection(props: { data: LeasesData | null }) {
  const data = props.data;
  if (!data || (data.mode === "off" && data.leases.length === 0)) return null;
  return (
    <section aria-labelledby="leases-h" data-leases>
      <h2 id="leases-h">Credit leases</h2>
      <p class="muted">
        payg_leases: <code>{data.mode}</code> · reserved <span data-leases-reserved>{data.reserved_exact_cents}</span> cents in {data.leases.length} live lease
        {data.leases.length === 1 ? "" : "s"} (taken from the balance until the isolates report; a revoked key or a freeze reaches them within 2 heartbeats)
      </p>
      {data.leases.length ? (
        <DataTable id="leases" caption="Live credit leases" head={["Isolate", "Granted (cents)", "Spent (cents)", "Reserve (cents)", "Round trip", "Expires in"]} hideCaption>
          {data.leases.map((l) => (
            <tr data-lease={l.id}>
              <td>
                <code>{l.isolate.slice(0, 8)}</code>
              </td>
              <td class="num">{l.granted_exact_cents}</td>
              <td class="num">{l.spent_exact_cents}</td>
              <td class="num">{l.reserve_exact_cents}</td>
              <td class="num">{l.rtt_ms} ms</td>
              <td class="num">{Math.ceil(l.expires_in_ms / 1000)} s</td>
            </tr>
          ))}
        </DataTable>
      ) : null}
    </section>
  );
}
