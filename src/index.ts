export * from './token-correlation-table/token-correlation-table';
export * from './rate-controlled-queue-consumer/rate-controlled-queue-consumer';
export * from './throttled-proxy/throttled-proxy';
export * from './throttled-proxy/vendor-credentials';
export * from './callback-webhook/callback-webhook';
export * from './dispatch-workflow/dispatch-workflow';
export * from './dispatch-workflow/callback-url-delivery';
export * from './orchestrator/async-external-api-orchestrator';
