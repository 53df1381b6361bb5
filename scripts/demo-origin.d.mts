export interface DemoOrigin {
  url: string;
  received: { method: string; path: string; headers: Record<string, string | string[] | undefined>; body: string }[];
  close(): Promise<void>;
}
export function startDemoOrigin(options?: { port?: number; host?: string }): Promise<DemoOrigin>;
