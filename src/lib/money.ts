/**
 * Money inside the gateway is an integer count of micro-cents (10^-6 of the currency's minor
 * unit), so sub-cent prices such as "0.05" cents are exact. Numbers stay far inside
 * Number.MAX_SAFE_INTEGER: MAX_AMOUNT_CENTS bounds every amount we accept.
 */
export const MICROS_PER_CENT = 1_000_000;
export const MAX_DECIMALS = 6;
/** $10,000,000 in cents: the largest balance, minimum or configured amount the gateway accepts. */
export const MAX_AMOUNT_CENTS = 1_000_000_000;
/** Stripe's limit of 8 digits of minor units: the largest single amount the admin API accepts. */
export const MAX_STRIPE_AMOUNT_CENTS = 99_999_999;

const DECIMAL = /^(-)?(\d{1,10})(?:\.(\d{1,6}))?$/;

/** Parses a decimal string of cents ("1", "0.05", "12.345") into micro-cents, or null. */
export function parseCentsDecimal(value: string): number | null {
  const match = DECIMAL.exec(value.trim());
  if (!match) return null;
  const [, sign, whole, fraction = ""] = match;
  const micros = Number(whole) * MICROS_PER_CENT + Number(fraction.padEnd(MAX_DECIMALS, "0"));
  if (micros > MAX_AMOUNT_CENTS * MICROS_PER_CENT) return null;
  return sign ? -micros : micros;
}

export function centsToMicros(cents: number): number {
  return cents * MICROS_PER_CENT;
}

/** Whole cents, rounded toward negative infinity (what a customer can spend in whole cents). */
export function microsToWholeCents(micros: number): number {
  return Math.floor(micros / MICROS_PER_CENT);
}

/** Exact decimal string of cents: 50_000 -> "0.05", -1_500_000 -> "-1.5". */
export function formatCents(micros: number): string {
  const sign = micros < 0 ? "-" : "";
  const abs = Math.abs(micros);
  const whole = Math.floor(abs / MICROS_PER_CENT);
  const fraction = String(abs % MICROS_PER_CENT)
    .padStart(MAX_DECIMALS, "0")
    .replace(/0+$/, "");
  return sign + String(whole) + (fraction ? `.${fraction}` : "");
}

/** Human amount in the currency's major unit: 1234_500_000 micro-cents, "usd" -> "$12.345". */
export function formatMoney(micros: number, currency: string): string {
  const sign = micros < 0 ? "-" : "";
  const abs = Math.abs(micros);
  const cents = Math.floor(abs / MICROS_PER_CENT);
  const subCent = String(abs % MICROS_PER_CENT)
    .padStart(MAX_DECIMALS, "0")
    .replace(/0+$/, "");
  const major = Math.floor(cents / 100);
  const minor = String(cents % 100).padStart(2, "0") + subCent;
  const symbol = currency.toLowerCase() === "usd" ? "$" : "";
  const suffix = symbol ? "" : ` ${currency.toUpperCase()}`;
  return `${sign}${symbol}${major}.${minor}${suffix}`;
}
