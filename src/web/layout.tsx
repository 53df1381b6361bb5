import { raw } from "hono/html";
import type { Child } from "hono/jsx";
import { CsrfField } from "./components";

export const ASSETS = "/dashboard/assets";

export interface NavItem {
  href: string;
  label: string;
  current?: boolean;
}

/** The page shell shared by the dashboard and the portal: landmarks, skip link, one stylesheet, one script. */
export function Layout(props: { title: string; product: string; home: string; nav?: NavItem[]; signOut?: { action: string; csrf: string }; children: Child }) {
  return (
    <>
      {raw("<!DOCTYPE html>")}
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <meta name="referrer" content="no-referrer" />
          <title>{`${props.title} · ${props.product}`}</title>
          <link rel="icon" href={`${ASSETS}/favicon.svg`} type="image/svg+xml" />
          <link rel="stylesheet" href={`${ASSETS}/app.css`} />
          <script type="module" src={`${ASSETS}/app.js`}></script>
        </head>
        <body>
          <a class="skip-link" href="#main">
            Skip to content
          </a>
          <header class="site-header">
            <a class="brand" href={props.home}>
              {props.product}
            </a>
            {props.nav?.length ? (
              <nav aria-label="Main">
                <ul>
                  {props.nav.map((item) => (
                    <li>
                      <a href={item.href} aria-current={item.current ? "page" : undefined}>
                        {item.label}
                      </a>
                    </li>
                  ))}
                </ul>
              </nav>
            ) : null}
            {props.signOut ? (
              <form method="post" action={props.signOut.action} class="sign-out">
                <CsrfField token={props.signOut.csrf} />
                <button type="submit" class="button-quiet">
                  Sign out
                </button>
              </form>
            ) : null}
          </header>
          <main id="main" tabindex={-1}>
            {props.children}
          </main>
        </body>
      </html>
    </>
  );
}

/** A friendly page for an error (the JSON API keeps the house error format). */
export function ErrorPage(props: { status: number; title: string; message: string; requestId: string; home: string; product: string }) {
  return (
    <Layout title={props.title} product={props.product} home={props.home}>
      <h1>{props.title}</h1>
      <p>{props.message}</p>
      <p class="muted">
        Status {props.status} · request id <code>{props.requestId}</code>
      </p>
      <p>
        <a href={props.home}>Back to the start</a>
      </p>
    </Layout>
  );
}
