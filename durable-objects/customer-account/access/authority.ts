import type { CustomerProfile } from "../../../src/lib/customer";
import type { AccountContext } from "../core/context";
import type { CapPeriod } from "./key-store";
import { activeProfile } from "./profile";

/*
 * Who may act for this account: its API keys, the portal links the provider issues, and portal
 * sessions, which end when signed out, when the key they signed in with is revoked, or when the
 * customer is deleted.
 */

/** A new API key (shown once); a first key can make the customer eligible for emails, so the directory learns when it is due. */
export async function issueKey(
  context: AccountContext,
  name: string | null,
  cap: { spendCapCents: number | null; capPeriod: CapPeriod | null },
): Promise<{ id: string; key: string; prefix: string; created_at: number; signed: boolean } | null> {
  if (!context.account.exists) return null;
  const key = await context.keys.create(context.account.row.customer_id, { name, ...cap });
  context.directory.schedule();
  return key;
}

/** Revokes a key: the very next request with it is refused, and the live sockets of sessions it opened close. */
export function revokeKey(context: AccountContext, keyId: string): boolean {
  const key = context.account.exists ? context.keys.byKeyId(keyId) : undefined;
  if (!key || !context.keys.revoke(keyId)) return false;
  context.live.keyRevoked(key.hash);
  return true;
}

/** A one-time portal link token for this customer, or null if there is no such (live) customer. */
export async function createPortalLink(context: AccountContext, expiresAt: number): Promise<string | null> {
  const { account, portalLinks } = context;
  if (!account.exists || account.row.deleted_at !== null) return null;
  return portalLinks.create(account.row.customer_id, expiresAt, Date.now());
}

/** Who an unused, unexpired portal link would sign in as, without consuming it (the confirmation page names the account). */
export function peekPortalLink(context: AccountContext, hash: string): CustomerProfile | null {
  const { account, portalLinks } = context;
  return account.exists && account.row.deleted_at === null && portalLinks.isOpen(hash, Date.now()) ? account.profile() : null;
}

/** Consumes a portal link (true once); a deleted customer's links no longer open. */
export function consumePortalLink(context: AccountContext, hash: string): boolean {
  const { account, portalLinks } = context;
  return account.exists && account.row.deleted_at === null && portalLinks.consume(hash, Date.now());
}

/**
 * Who a portal session is, checked on every portal request: null once it was signed out, the key
 * it signed in with (if any) was revoked, or the customer was deleted.
 */
export function portalSession(context: AccountContext, input: { sid: string; keyHash?: string }): CustomerProfile | null {
  return context.account.exists && !context.endedSessions.has(input.sid) ? activeProfile(context, input.keyHash) : null;
}

/** A portal session signed out: its cookie no longer opens the portal, even if a copy was kept, and its live sockets close. */
export function endPortalSession(context: AccountContext, input: { sid: string; expiresAt: number }): void {
  const { account, endedSessions, live } = context;
  if (!account.exists) return;
  endedSessions.end(input.sid, input.expiresAt, Date.now());
  live.sessionEnded(input.sid);
}

/** The customer and the id of the key a portal sign-in used (a key session shows only that key), or null. */
export function identifyKey(context: AccountContext, keyHash: string): { customer: CustomerProfile; keyId: string; capped: boolean } | null {
  const customer = activeProfile(context, keyHash);
  const key = context.keys.active(keyHash);
  return customer && key ? { customer, keyId: key.id, capped: key.spend_cap_cents !== null } : null;
}
