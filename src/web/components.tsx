import type { Child } from "hono/jsx";
import { formatMoney, parseCentsDecimal } from "../lib/money";
import type { ChartData } from "./chart-data";

/** Exact decimal cents (the admin API's `*_exact_cents`) as money in the configured currency. */
export function money(exactCents: string | null | undefined, currency: string): string {
  const micros = exactCents === null || exactCents === undefined ? null : parseCentsDecimal(exactCents);
  return micros === null ? "—" : formatMoney(micros, currency);
}

/** A time, formatted in the viewer's time zone by the page's script (UTC until it runs). */
export function Time({ at }: { at: number | null | undefined }) {
  if (at === null || at === undefined) return <span class="muted">never</span>;
  const iso = new Date(at).toISOString();
  return (
    <time datetime={iso} data-local>
      {iso.slice(0, 16).replace("T", " ")} UTC
    </time>
  );
}

export function CsrfField({ token }: { token: string }) {
  return <input type="hidden" name="_csrf" value={token} />;
}

export function Notice({ tone = "info", children }: { tone?: "info" | "success" | "error"; children: Child }) {
  return (
    <div class={`notice notice-${tone}`} role={tone === "error" ? "alert" : "status"}>
      {children}
    </div>
  );
}

/** A table that scrolls on its own at narrow widths (the page never scrolls sideways). */
export function DataTable({ id, caption, head, children, hideCaption }: { id: string; caption: string; head: string[]; children: Child; hideCaption?: boolean }) {
  return (
    // biome-ignore lint/a11y/useSemanticElements: a scrolling wrapper, not a section of the page: the region role makes it focusable and named for keyboard users
    <div class="table-wrap" role="region" aria-labelledby={`${id}-caption`} tabindex={0}>
      <table id={id}>
        <caption id={`${id}-caption`} class={hideCaption ? "visually-hidden" : undefined}>
          {caption}
        </caption>
        <thead>
          <tr>
            {head.map((h) => (
              <th scope="col">{h}</th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}

function valueLabel(data: ChartData, value: number): string {
  return data.unit === "money" ? formatMoney(value, data.currency) : String(value);
}

/** A chart (drawn by uPlot in the page) with its numbers as a table for anyone who cannot see it. */
export function Chart({ id, title, data }: { id: string; title: string; data: ChartData }) {
  const json = JSON.stringify(data).replace(/</g, "\\u003c");
  const rows = data.x.map((at, i) => ({ at, values: data.series.map((s) => s.values[i]!) })).filter((r) => r.values.some((v) => v !== 0));
  return (
    <figure class="chart" aria-labelledby={`${id}-title`}>
      <figcaption id={`${id}-title`}>{title}</figcaption>
      {data.series.length === 0 ? (
        <p class="muted">No usage in this period.</p>
      ) : (
        <>
          <div class="chart-canvas" data-chart={id} role="img" aria-label={`${title}: chart; the table below has the numbers`}></div>
          <script type="application/json" id={id} dangerouslySetInnerHTML={{ __html: json }}></script>
          <details>
            <summary>Show the numbers</summary>
            <DataTable id={`${id}-table`} caption={title} head={["Hour", ...data.series.map((s) => s.label)]} hideCaption>
              {rows.map((r) => (
                <tr>
                  <td>
                    <Time at={r.at} />
                  </td>
                  {r.values.map((v) => (
                    <td class="num">{valueLabel(data, v)}</td>
                  ))}
                </tr>
              ))}
            </DataTable>
          </details>
        </>
      )}
    </figure>
  );
}

/** A table of whatever a newer admin route returns (grants, webhook endpoints), until it gets its own view. */
export function GenericList({ id, caption, items }: { id: string; caption: string; items: Record<string, unknown>[] }) {
  if (!items.length) return <p class="muted">None yet.</p>;
  const columns = [...new Set(items.slice(0, 20).flatMap((i) => Object.keys(i)))].slice(0, 8);
  return (
    <DataTable id={id} caption={caption} head={columns} hideCaption>
      {items.map((item) => (
        <tr>
          {columns.map((col) => {
            const value = item[col];
            if (col.endsWith("_at") && typeof value === "number")
              return (
                <td>
                  <Time at={value} />
                </td>
              );
            return <td>{value === null || value === undefined ? "" : typeof value === "object" ? JSON.stringify(value) : String(value)}</td>;
          })}
        </tr>
      ))}
    </DataTable>
  );
}

/** The first array in a JSON body (`{grants: [...]}`, `{endpoints: [...]}`, or the array itself). */
export function firstList(body: unknown): Record<string, unknown>[] {
  if (Array.isArray(body)) return body as Record<string, unknown>[];
  if (body && typeof body === "object") {
    const found = Object.values(body).find(Array.isArray);
    if (found) return found as Record<string, unknown>[];
  }
  return [];
}
