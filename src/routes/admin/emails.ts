import { Hono } from "hono";
import { z } from "zod";
import { type AppEnv, customerStub, directoryStub } from "../../env";
import { jsonBody, queryInt } from "../../http";
import { CUSTOMER_ID } from "../../lib/api-key-format";
import { COHORTS } from "../../lib/config";
import { sendViaMailChannels } from "../../lib/email/mailchannels";
import { listUnsubscribeHeaders, unsubscribeUrl, withHtmlFooter, withTextFooter } from "../../lib/email/unsubscribe";
import { ApiError } from "../../lib/errors";
import { mergeValues } from "../../lib/merge";
import { centsToMicros, parseCentsDecimal } from "../../lib/money";
import { escapeHtml, renderString } from "../../lib/template";
import { notFound } from "./customers";

const TestEmailBody = z.strictObject({
  template: z.enum(COHORTS),
  to: z.email(),
  customer_id: z.string().regex(CUSTOMER_ID).optional(),
});

const SAMPLE_CUSTOMER = "cus_sample";

/** `/admin/emails…`: the tutorial's "Test" button for email templates. */
export const emails = new Hono<AppEnv>();

/** Renders a template with a customer's (or sample) data and sends it. */
emails.post("/emails/test", async (c) => {
  const config = c.var.config;
  const body = await jsonBody(c, TestEmailBody);
  const template = config.EMAILS?.templates[body.template];
  if (!config.EMAILS || !template) throw new ApiError("not_found", `No email template for cohort ${body.template}.`);
  let values = mergeValues(
    config,
    { id: SAMPLE_CUSTOMER, name: "Ada Lovelace", email: body.to },
    { balanceMicros: 0, minimumMicros: centsToMicros(config.GOVERNANCE.minimum_balance_cents), priceMicros: config.PRICING.fallback.priceMicros },
  );
  if (body.customer_id) {
    const summary = (await customerStub(c.env, body.customer_id).summary()) as {
      customer: { id: string; name: string | null; email: string | null };
      balance: { available_exact_cents: string; minimum_cents: number };
    } | null;
    if (!summary) notFound(body.customer_id);
    const { customer, balance } = summary;
    values = mergeValues(config, customer, {
      // The exact balance, as the real emails show it (whole cents would print $0.00 for 0.95 cents).
      balanceMicros: parseCentsDecimal(balance.available_exact_cents) ?? 0,
      minimumMicros: centsToMicros(balance.minimum_cents),
      priceMicros: config.PRICING.fallback.priceMicros,
    });
  }
  // As customers get it, with a link that names no real customer (a tester cannot unsubscribe anyone).
  const link = await unsubscribeUrl(config, SAMPLE_CUSTOMER);
  const email = {
    to: body.to,
    subject: renderString(template.subject, values),
    text: withTextFooter(renderString(template.text, values), link),
    html: template.html ? withHtmlFooter(renderString(template.html, escapeHtml(values)), link) : null,
  };
  if (config.emailDelivery === "outbox") {
    const id = await directoryStub(c.env).recordTestEmail(email);
    return c.json({ status: "outbox", id, email }, 202);
  }
  const result = await sendViaMailChannels(config, {
    ...email,
    ...(email.html ? { html: email.html } : { html: undefined }),
    headers: listUnsubscribeHeaders(link),
  });
  if (result.outcome !== "sent") throw new ApiError("upstream_error", `MailChannels did not accept the email: ${result.error}`);
  return c.json({ status: "sent", email }, 202);
});

emails.get("/emails/test-outbox", async (c) => {
  return c.json({ emails: await directoryStub(c.env).testOutbox(queryInt(c, "limit", 50, 1, 500)) });
});
