// The pages' one script: times in the viewer's time zone, charts (uPlot), the live balance
// (a WebSocket the customer's Durable Object pushes to; no polling), and small form helpers.
import uPlot from "uplot";
import { formatMoney } from "../../lib/money";
import "./app.css";

interface ChartData {
  unit: "requests" | "tokens" | "money";
  currency: string;
  x: number[];
  series: { label: string; values: number[] }[];
}

const COLORS = ["#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c", "#0e7490"];
/** Whole-number tick steps: requests, tokens and micro-cents are integers. */
const INCREMENTS = Array.from({ length: 16 }, (_, k) => [1, 2, 5].map((m) => m * 10 ** k)).flat();

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function localTimes(root: ParentNode = document): void {
  for (const el of root.querySelectorAll<HTMLTimeElement>("time[data-local]")) {
    const at = new Date(el.dateTime);
    if (!Number.isNaN(at.getTime())) el.textContent = dateTime.format(at);
  }
}

function drawChart(el: HTMLElement): void {
  const source = document.getElementById(el.dataset.chart!);
  if (!source?.textContent) return;
  const data = JSON.parse(source.textContent) as ChartData;
  const label = (v: number | null) => (v === null ? "" : data.unit === "money" ? formatMoney(Math.round(v), data.currency) : String(Math.round(v)));
  const width = () => Math.max(260, el.clientWidth);
  const plot = new uPlot(
    {
      width: width(),
      height: 220,
      cursor: { drag: { x: false, y: false } },
      scales: { y: { range: (_u, _min, max) => [0, Math.max(max, data.unit === "money" ? 100 : 1)] } },
      series: [
        { value: (_u, v) => (v === null ? "" : dateTime.format(new Date(v * 1000))) },
        ...data.series.map((s, i) => ({
          label: s.label,
          stroke: COLORS[i % COLORS.length]!,
          width: 2,
          value: (_u: uPlot, v: number | null) => label(v),
        })),
      ],
      axes: [{}, { values: (_u, ticks) => ticks.map((t) => label(t)), size: data.unit === "money" ? 80 : 50, incrs: INCREMENTS }],
    },
    [data.x.map((ms) => ms / 1000), ...data.series.map((s) => s.values)],
    el,
  );
  new ResizeObserver(() => plot.setSize({ width: width(), height: 220 })).observe(el);
}

interface LiveBalance {
  type: "balance";
  available: string;
  available_exact_cents: string;
  cohorts: string[];
}

function live(el: HTMLElement): void {
  const status = el.querySelector<HTMLElement>("[data-live-status]");
  const url = new URL(el.dataset.liveUrl!, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  let delay = 500;
  let keepAlive: ReturnType<typeof setInterval> | undefined;
  const connect = () => {
    const socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      delay = 500;
      if (status) status.textContent = "Live";
      el.dataset.liveState = "open";
      // Answered by the runtime without waking the object.
      keepAlive = setInterval(() => socket.send("ping"), 30_000);
    });
    socket.addEventListener("message", (event) => {
      if (event.data === "pong") return;
      const message = JSON.parse(String(event.data)) as LiveBalance;
      if (message.type !== "balance") return;
      for (const target of document.querySelectorAll<HTMLElement>("[data-balance]")) target.textContent = message.available;
      for (const target of document.querySelectorAll<HTMLElement>("[data-balance-exact]")) target.textContent = message.available_exact_cents;
      for (const target of document.querySelectorAll<HTMLElement>("[data-live-cohorts]")) {
        target.textContent = message.cohorts.length ? message.cohorts.join(", ") : "none";
      }
    });
    socket.addEventListener("close", () => {
      clearInterval(keepAlive);
      el.dataset.liveState = "closed";
      if (status) status.textContent = "Reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30_000);
    });
  };
  connect();
}

function formHelpers(): void {
  // A second click while the first submit is on its way does nothing (the server is idempotent anyway).
  document.addEventListener("submit", (event) => {
    const form = event.target as HTMLFormElement;
    if (form.dataset.submitting) {
      event.preventDefault();
      return;
    }
    form.dataset.submitting = "1";
    setTimeout(() =>
      form.querySelectorAll<HTMLButtonElement>("button[type=submit]").forEach((b) => {
        b.disabled = true;
      }),
    );
  });
  for (const button of document.querySelectorAll<HTMLButtonElement>("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy!)?.textContent ?? "";
      await navigator.clipboard.writeText(text.trim()).catch(() => undefined);
      button.textContent = "Copied";
    });
  }
}

function start(): void {
  localTimes();
  for (const el of document.querySelectorAll<HTMLElement>("[data-chart]")) drawChart(el);
  for (const el of document.querySelectorAll<HTMLElement>("[data-live-url]")) live(el);
  formHelpers();
  document.documentElement.dataset.ready = "1";
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
