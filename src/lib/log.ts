/** One small logger with a level, so tests can run quietly and production logs stay useful. */
export const LOG_LEVELS = ["debug", "info", "warn", "error", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const rank: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3, silent: 4 };
let threshold = rank.info;

export function setLogLevel(level: LogLevel): void {
  threshold = rank[level];
}

function emit(level: Exclude<LogLevel, "silent">, message: string, detail: unknown[]): void {
  if (rank[level] < threshold) return;
  const line = `[${level}] ${message}`;
  if (level === "error") console.error(line, ...detail);
  else if (level === "warn") console.warn(line, ...detail);
  else console.log(line, ...detail);
}

export const log = {
  debug: (message: string, ...detail: unknown[]) => emit("debug", message, detail),
  info: (message: string, ...detail: unknown[]) => emit("info", message, detail),
  warn: (message: string, ...detail: unknown[]) => emit("warn", message, detail),
  error: (message: string, ...detail: unknown[]) => emit("error", message, detail),
};
