export interface DemoOrigin {
  url: string;
  received: {
    method: string;
    path: string;
    headers: Record<string, string | string[] | undefined>;
    body: string;
    /** With a signing secret: whether X-Payg-Signature verified; otherwise "unchecked". */
    signature: "valid" | "invalid" | "unchecked";
    /** For /v1/stream: the events written so far (it stops when the gateway hangs up). */
    events?: number;
  }[];
  close(): Promise<void>;
}
export function startDemoOrigin(options?: { port?: number; host?: string; signingSecret?: string }): Promise<DemoOrigin>;
