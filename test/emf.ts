/**
 * Reads the CloudWatch embedded metric format (EMF) documents a handler writes to stdout.
 * Shared by the handler tests.
 */

/** An EMF document as Powertools writes it (only the parts the tests read are typed). */
export interface EmfDocument {
  readonly _aws: {
    readonly Timestamp: number;
    readonly CloudWatchMetrics: Array<{ Namespace: string; Dimensions: string[][]; Metrics: Array<{ Name: string; Unit: string }> }>;
  };
  readonly [key: string]: unknown;
}

/** Runs `run` with stdout captured, and returns the EMF documents written meanwhile. */
export async function captureEmf(run: () => Promise<unknown>): Promise<EmfDocument[]> {
  const chunks: string[] = [];
  const write = jest.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array) => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  }) as typeof process.stdout.write);
  try {
    await run();
  } finally {
    write.mockRestore();
  }
  return chunks.join('').split('\n').flatMap((line) => {
    try {
      const doc = JSON.parse(line) as Partial<EmfDocument>;
      return Array.isArray(doc?._aws?.CloudWatchMetrics) ? [doc as EmfDocument] : [];
    } catch {
      return [];
    }
  });
}
