/**
 * Customers and customer balance transactions.
 *
 * - Every balance change is a `customer_balance_transaction` and, in the customer's currency,
 *   emits `customer.updated` with `previous_attributes.balance` (there is no
 *   `customer.balance_transaction.created` event).
 * - A transaction in another currency than the customer's `currency` is accepted (the SDK's
 *   CustomerCreateBalanceTransactionParams.currency: "Specifies the invoice_credit_balance that this
 *   transaction will apply to"): it moves that currency's balance, which shows only in
 *   `invoice_credit_balance` (an includable field: returned with `expand[]=invoice_credit_balance`),
 *   never in `balance`. Its `ending_balance` is that currency's balance after it.
 */
import type Stripe from "stripe";
import {
  applyMetadata,
  checkKnown,
  clone,
  invalid,
  metadataDiff,
  newId,
  noSuch,
  type Params,
  randomChars,
  readCurrency,
  readExpand,
  readInt,
  readMetadata,
  readNullableString,
  readString,
} from "./common";
import { eventRequest, type RequestContext, StripeState } from "./core";
import { attachPaymentMethod, resolvePaymentMethod } from "./payments";

// Top-level parameters (from the SDK's CustomerCreateParams / CustomerUpdateParams / ...Params).
const CUSTOMER_CREATE_PARAMS = new Set([
  "address",
  "balance",
  "business_name",
  "cash_balance",
  "description",
  "email",
  "expand",
  "individual_name",
  "invoice_prefix",
  "invoice_settings",
  "metadata",
  "name",
  "next_invoice_sequence",
  "payment_method",
  "phone",
  "preferred_locales",
  "shipping",
  "source",
  "tax",
  "tax_exempt",
  "tax_id_data",
  "test_clock",
  "validate",
]);
const CUSTOMER_UPDATE_PARAMS = new Set([
  "address",
  "balance",
  "business_name",
  "cash_balance",
  "default_source",
  "description",
  "email",
  "expand",
  "individual_name",
  "invoice_prefix",
  "invoice_settings",
  "metadata",
  "name",
  "next_invoice_sequence",
  "phone",
  "preferred_locales",
  "shipping",
  "source",
  "tax",
  "tax_exempt",
  "validate",
]);
const INVOICE_SETTINGS_PARAMS = new Set(["custom_fields", "default_payment_method", "footer", "rendering_options"]);
const BALANCE_TXN_CREATE_PARAMS = new Set(["amount", "currency", "description", "expand", "metadata"]);
const BALANCE_TXN_LIST_PARAMS = new Set(["created", "ending_before", "expand", "invoice", "limit", "starting_after"]);
const RETRIEVE_PARAMS = new Set(["expand"]);
/** Customer fields that `expand[]` can ask for here. */
const CUSTOMER_EXPANDABLE = ["invoice_credit_balance", "invoice_settings.default_payment_method"] as const;
/** maxLength of a customer balance transaction's description. */
export const BALANCE_TXN_DESCRIPTION_MAX = 350;

export interface CreateCustomerInput {
  id?: string;
  email?: string | null;
  name?: string | null;
  metadata?: Record<string, string>;
  balance?: number;
  /** The customer's `currency` (on real Stripe it is set by its first balance transaction or invoice). */
  currency?: string;
  /**
   * A payment method to attach at creation: a test token such as "pm_card_visa" (a new pm_… is
   * attached) or the id of an unattached pm_…. Like `payment_method` on POST /v1/customers.
   */
  paymentMethod?: string;
  /** Make the attached payment method the default (`invoice_settings.default_payment_method`). */
  defaultPaymentMethod?: boolean;
}

/** The customer fields create and update share, validated before anything changes. */
function readCustomerParams(params: Params) {
  const settings = params.invoice_settings;
  let defaultPaymentMethod: string | null | undefined;
  if (settings !== undefined) {
    if (typeof settings !== "object" || settings === null || Array.isArray(settings)) {
      throw invalid("Invalid object", { param: "invoice_settings" });
    }
    for (const key of Object.keys(settings)) {
      if (!INVOICE_SETTINGS_PARAMS.has(key)) {
        throw invalid(`Received unknown parameter: invoice_settings[${key}]`, { code: "parameter_unknown", param: `invoice_settings[${key}]` });
      }
    }
    defaultPaymentMethod = readNullableString(settings as Params, "default_payment_method");
  }
  return {
    email: readNullableString(params, "email"),
    name: readNullableString(params, "name"),
    description: readNullableString(params, "description"),
    phone: readNullableString(params, "phone"),
    metadata: readMetadata(params),
    balance: readInt(params, "balance"),
    defaultPaymentMethod,
  };
}

/** A default payment method must be attached to this customer. */
function checkDefaultPaymentMethod(state: StripeState, customerId: string, pmId: string | null): void {
  if (pmId === null) return;
  const pm = state.paymentMethods.get(pmId);
  if (!pm || pm.customer !== customerId) {
    throw invalid(`No such PaymentMethod: '${pmId}'; the payment method must be attached to customer ${customerId} to be its default.`, {
      code: "resource_missing",
      param: "invoice_settings[default_payment_method]",
    });
  }
}

/** The customer as the API shows it, with the includable fields `expand` asked for. */
export function customerView(state: StripeState, c: Stripe.Customer, expand: ReadonlySet<string>): Stripe.Customer {
  const view = clone(c);
  if (expand.has("invoice_credit_balance")) {
    // SDK doc of Customer.invoice_credit_balance (from the spec): "If positive in a currency, the
    // customer has a credit ... If negative, the customer has an amount owed": the opposite sign
    // of `balance`, so a credit of 500 shows as +500 here.
    const map: Record<string, number> = {};
    for (const [currency, balance] of state.otherBalances.get(c.id) ?? []) map[currency] = balance === 0 ? 0 : -balance;
    view.invoice_credit_balance = map;
  }
  if (expand.has("invoice_settings.default_payment_method")) {
    const pmId = c.invoice_settings.default_payment_method;
    if (typeof pmId === "string") view.invoice_settings.default_payment_method = clone(state.paymentMethods.get(pmId)!);
  }
  return view;
}

// ----------------------------------------------------------------------------- HTTP

export function apiCreateCustomer(state: StripeState, params: Params, ctx: RequestContext): Stripe.Customer {
  checkKnown(params, CUSTOMER_CREATE_PARAMS);
  const expand = readExpand(params, CUSTOMER_EXPANDABLE);
  const { email, name, description, phone, metadata, balance, defaultPaymentMethod } = readCustomerParams(params);
  const invoicePrefix = readString(params, "invoice_prefix");
  const pmParam = readString(params, "payment_method");
  // Validate the payment method before anything is created.
  const pm = pmParam !== undefined ? resolvePaymentMethod(state, pmParam, "payment_method") : undefined;
  if (pm?.customer) throw invalid(`The payment method ${pm.id} is already attached to a customer.`, { param: "payment_method" });
  if (defaultPaymentMethod && defaultPaymentMethod !== pm?.id) {
    throw invalid(`No such PaymentMethod: '${defaultPaymentMethod}'`, { code: "resource_missing", param: "invoice_settings[default_payment_method]" });
  }
  const customer = insertCustomer(
    state,
    {
      email: email ?? null,
      name: name ?? null,
      metadata: metadata ? applyMetadata({}, metadata) : {},
      balance: balance ?? 0,
      currency: null,
    },
    { description: description ?? null, phone: phone ?? null, invoicePrefix },
    eventRequest(ctx),
  );
  if (pm) attachPaymentMethod(state, pm, customer.id, eventRequest(ctx));
  if (defaultPaymentMethod) customer.invoice_settings.default_payment_method = defaultPaymentMethod;
  return customerView(state, customer, expand);
}

export function apiRetrieveCustomer(state: StripeState, id: string, params: Params): Stripe.Customer | Stripe.DeletedCustomer {
  checkKnown(params, RETRIEVE_PARAMS);
  const expand = readExpand(params, CUSTOMER_EXPANDABLE);
  if (state.deletedCustomers.has(id)) return { id, object: "customer", deleted: true };
  const c = state.customers.get(id);
  if (!c) throw noSuch("customer", id, "id", 404);
  return customerView(state, c, expand);
}

export function apiUpdateCustomer(state: StripeState, id: string, params: Params, ctx: RequestContext): Stripe.Customer {
  checkKnown(params, CUSTOMER_UPDATE_PARAMS);
  const expand = readExpand(params, CUSTOMER_EXPANDABLE);
  const c = state.liveCustomer(id);
  // Validate everything before changing anything.
  const { email, name, description, phone, metadata, balance, defaultPaymentMethod } = readCustomerParams(params);
  if (defaultPaymentMethod !== undefined) checkDefaultPaymentMethod(state, c.id, defaultPaymentMethod);

  const previous: Partial<Stripe.Customer> = {};
  const fields = { email, name, description, phone } as const;
  for (const field of Object.keys(fields) as (keyof typeof fields)[]) {
    const value = fields[field];
    if (value !== undefined && value !== (c[field] ?? null)) {
      previous[field] = c[field] ?? null;
      c[field] = value;
    }
  }
  if (metadata) {
    const next = applyMetadata(c.metadata, metadata);
    const diff = metadataDiff(c.metadata, next);
    if (diff) {
      previous.metadata = diff as Stripe.Metadata;
      c.metadata = next;
    }
  }
  if (defaultPaymentMethod !== undefined && defaultPaymentMethod !== c.invoice_settings.default_payment_method) {
    previous.invoice_settings = { ...c.invoice_settings };
    c.invoice_settings = { ...c.invoice_settings, default_payment_method: defaultPaymentMethod };
  }
  if (balance !== undefined && balance !== c.balance) {
    const currencyBefore = c.currency ?? null;
    const balanceBefore = c.balance;
    writeTransaction(state, c, balance - c.balance, c.currency ?? state.defaultCurrency, null, null, "adjustment");
    previous.balance = balanceBefore;
    if (currencyBefore !== (c.currency ?? null)) previous.currency = currencyBefore;
  }
  if (Object.keys(previous).length > 0) state.emit("customer.updated", c, previous, eventRequest(ctx));
  return customerView(state, c, expand);
}

export function apiDeleteCustomer(state: StripeState, id: string, ctx: RequestContext): Stripe.DeletedCustomer {
  const c = state.liveCustomer(id);
  state.deletedCustomers.add(id);
  state.emit("customer.deleted", c, undefined, eventRequest(ctx));
  return { id, object: "customer", deleted: true };
}

export function apiCreateBalanceTransaction(state: StripeState, customerId: string, params: Params, ctx: RequestContext): Stripe.CustomerBalanceTransaction {
  checkKnown(params, BALANCE_TXN_CREATE_PARAMS);
  readExpand(params, ["customer"]);
  const c = state.liveCustomer(customerId);
  const amount = readInt(params, "amount", { required: true }) as number;
  const currency = readCurrency(params, "currency", { required: true }) as string;
  const description = readString(params, "description", { max: BALANCE_TXN_DESCRIPTION_MAX });
  const metadata = readMetadata(params);
  const inCustomerCurrency = !c.currency || c.currency === currency;
  const previous: Partial<Stripe.Customer> = { balance: c.balance };
  if (!c.currency) previous.currency = c.currency ?? null;
  const txn = writeTransaction(
    state,
    c,
    amount,
    currency,
    description === undefined || description === "" ? null : description,
    metadata ? applyMetadata({}, metadata) : null,
    "adjustment",
  );
  // Another currency moves only invoice_credit_balance, an includable field that events do not
  // carry: `balance` is unchanged and no customer.updated is emitted (the double's choice).
  if (inCustomerCurrency) state.emit("customer.updated", c, previous, eventRequest(ctx));
  return txn;
}

export function apiListBalanceTransactions(state: StripeState, customerId: string, params: Params, url: string): Stripe.ApiList<Stripe.CustomerBalanceTransaction> {
  checkKnown(params, BALANCE_TXN_LIST_PARAMS);
  state.liveCustomer(customerId);
  const limit = readInt(params, "limit") ?? 10;
  if (limit < 1 || limit > 100) throw invalid(`Invalid limit: must be between 1 and 100`, { param: "limit" });
  const startingAfter = readString(params, "starting_after");
  const endingBefore = readString(params, "ending_before");
  if (startingAfter && endingBefore) throw invalid("You may only specify one of these parameters: ending_before, starting_after.");
  const newestFirst = [...(state.transactions.get(customerId) ?? [])].reverse();
  return paginate(newestFirst, limit, startingAfter, endingBefore, url, "customer_balance_transaction");
}

export function apiRetrieveBalanceTransaction(state: StripeState, customerId: string, txnId: string, params: Params): Stripe.CustomerBalanceTransaction {
  checkKnown(params, RETRIEVE_PARAMS);
  state.liveCustomer(customerId);
  const txn = (state.transactions.get(customerId) ?? []).find((t) => t.id === txnId);
  if (!txn) throw noSuch("customer_balance_transaction", txnId, "transaction", 404);
  return txn;
}

/** Stripe list pagination over a newest-first array. */
export function paginate<T extends { id: string }>(
  newestFirst: T[],
  limit: number,
  startingAfter: string | undefined,
  endingBefore: string | undefined,
  url: string,
  kind: string,
): Stripe.ApiList<T> {
  let data: T[];
  let hasMore: boolean;
  if (startingAfter) {
    const idx = newestFirst.findIndex((t) => t.id === startingAfter);
    if (idx < 0) throw noSuch(kind, startingAfter, "starting_after", 400);
    const rest = newestFirst.slice(idx + 1);
    data = rest.slice(0, limit);
    hasMore = rest.length > limit;
  } else if (endingBefore) {
    const idx = newestFirst.findIndex((t) => t.id === endingBefore);
    if (idx < 0) throw noSuch(kind, endingBefore, "ending_before", 400);
    const before = newestFirst.slice(0, idx);
    data = before.slice(Math.max(0, before.length - limit));
    hasMore = before.length > limit;
  } else {
    data = newestFirst.slice(0, limit);
    hasMore = newestFirst.length > limit;
  }
  return { object: "list", data, has_more: hasMore, url };
}

// ----------------------------------------------------------------------------- test-side helpers

/** Create a customer directly (no HTTP), emitting `customer.created`. */
export function createCustomer(state: StripeState, input: CreateCustomerInput = {}): Stripe.Customer {
  if (input.id !== undefined && state.customers.has(input.id)) throw new Error(`customer ${input.id} already exists`);
  if (input.balance !== undefined && !Number.isSafeInteger(input.balance)) throw new Error("balance must be an integer");
  if (input.currency !== undefined && !/^[a-z]{3}$/.test(input.currency)) throw new Error(`currency must be a lowercase ISO code, got ${input.currency}`);
  if (input.defaultPaymentMethod && !input.paymentMethod) throw new Error("defaultPaymentMethod needs paymentMethod");
  const pm = input.paymentMethod ? resolvePaymentMethod(state, input.paymentMethod, "payment_method") : undefined;
  if (pm?.customer) throw new Error(`payment method ${pm.id} is already attached to ${String(pm.customer)}`);
  const c = insertCustomer(
    state,
    {
      id: input.id,
      email: input.email ?? null,
      name: input.name ?? null,
      metadata: { ...(input.metadata ?? {}) },
      balance: input.balance ?? 0,
      currency: input.currency ?? null,
    },
    {},
    { id: newId("req_", 14), idempotency_key: null },
  );
  if (pm) {
    attachPaymentMethod(state, pm, c.id, StripeState.noRequest);
    if (input.defaultPaymentMethod) c.invoice_settings.default_payment_method = pm.id;
  }
  return clone(c);
}

/**
 * Dashboard-style balance change: creates an `adjustment` balance transaction
 * (negative amount = credit) and emits `customer.updated` with previous_attributes.balance.
 */
export function adjustBalance(state: StripeState, customerId: string, amount: number, description?: string): Stripe.CustomerBalanceTransaction {
  if (!Number.isSafeInteger(amount)) throw new Error("amount must be an integer");
  const c = state.customers.get(customerId);
  if (!c || state.deletedCustomers.has(customerId)) throw new Error(`no such live customer ${customerId}`);
  const previous: Partial<Stripe.Customer> = { balance: c.balance };
  if (!c.currency) previous.currency = c.currency ?? null;
  const txn = writeTransaction(state, c, amount, c.currency ?? state.defaultCurrency, description ?? null, null, "adjustment");
  state.emit("customer.updated", c, previous, { id: newId("req_", 14), idempotency_key: null });
  return clone(txn);
}

// ----------------------------------------------------------------------------- internals

export function insertCustomer(
  state: StripeState,
  fields: { id?: string; email: string | null; name: string | null; metadata: Stripe.Metadata; balance: number; currency: string | null },
  extra: { description?: string | null; phone?: string | null; invoicePrefix?: string },
  request: Stripe.Event.Request,
): Stripe.Customer {
  const id = fields.id ?? newId("cus_", 14);
  const customer: Stripe.Customer = {
    id,
    object: "customer",
    address: null,
    balance: 0,
    created: state.nowSeconds(),
    currency: fields.currency,
    customer_account: null,
    default_source: null,
    delinquent: false,
    description: extra.description ?? null,
    discount: null,
    email: fields.email,
    invoice_prefix: extra.invoicePrefix ?? randomChars(8, "0123456789ABCDEF"),
    invoice_settings: { custom_fields: null, default_payment_method: null, footer: null, rendering_options: null },
    livemode: false,
    metadata: fields.metadata,
    name: fields.name,
    next_invoice_sequence: 1,
    phone: extra.phone ?? null,
    preferred_locales: [],
    shipping: null,
    tax_exempt: "none",
    test_clock: null,
  };
  state.customers.set(id, customer);
  state.transactions.set(id, []);
  if (fields.balance !== 0) {
    writeTransaction(state, customer, fields.balance, fields.currency ?? state.defaultCurrency, null, null, "initial");
  }
  state.emit("customer.created", customer, undefined, request);
  return customer;
}

/**
 * Appends a balance transaction and moves the balance of its currency: the customer's `balance`
 * when it is in the customer's currency (setting that currency if it had none), otherwise the
 * balance behind `invoice_credit_balance[currency]`. Emits nothing.
 */
export function writeTransaction(
  state: StripeState,
  customer: Stripe.Customer,
  amount: number,
  currency: string,
  description: string | null,
  metadata: Stripe.Metadata | null,
  type: Stripe.CustomerBalanceTransaction.Type,
): Stripe.CustomerBalanceTransaction {
  if (!customer.currency) customer.currency = currency;
  let ending: number;
  if (customer.currency === currency) {
    ending = customer.balance + amount;
    customer.balance = ending;
  } else {
    let balances = state.otherBalances.get(customer.id);
    if (!balances) state.otherBalances.set(customer.id, (balances = new Map()));
    ending = (balances.get(currency) ?? 0) + amount;
    balances.set(currency, ending);
  }
  const txn: Stripe.CustomerBalanceTransaction = {
    id: newId("cbtxn_"),
    object: "customer_balance_transaction",
    amount,
    checkout_session: null,
    created: state.nowSeconds(),
    credit_note: null,
    currency,
    customer: customer.id,
    customer_account: null,
    description,
    ending_balance: ending,
    invoice: null,
    livemode: false,
    metadata,
    type,
  };
  const list = state.transactions.get(customer.id);
  if (list) list.push(txn);
  else state.transactions.set(customer.id, [txn]);
  return txn;
}
