import type { FacilitatorDouble } from "../test/doubles/x402-facilitator";

export interface Facilitator {
  url: string;
  rpcUrl: string;
  double: FacilitatorDouble;
  close(): Promise<void>;
}
export function startFacilitator(options?: { port?: number; network?: string; asset?: string; faucet?: bigint }): Promise<Facilitator>;
