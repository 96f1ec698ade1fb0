/**
 * Local SQS: fauxqs (JSON protocol, delays, visibility, long polling, redrive) on loopback, and the
 * template's queues created in it with their synthesized attributes.
 *
 * Queue URLs are `${endpoint}/${LOCAL_ACCOUNT}/${name}`, the form LocalTemplate resolves `Ref` to
 * and the real handlers derive from queue ARNs. fauxqs cannot produce that form by configuration
 * (its `host` option always yields `http://sqs.<region>.<host>:<port>/...`, and `startFauxqs` binds
 * 0.0.0.0), so the emulator runs from `buildApp` with two small changes to its queue store: URLs are
 * built from the request's Host header (what fauxqs does when no host is configured, which its
 * options cannot select), and a URL it does not know exactly is looked up by its path
 * `/<account>/<name>` whatever the host, as SQS does (`localhost` and `127.0.0.1` both work).
 *
 * fauxqs is an ES module only (`exports` has no `require` condition) and jest cannot `import()` it
 * without --experimental-vm-modules, so it runs in a child Node process; the child exits when its
 * stdin closes, so it never outlives the process that started it.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { LocalTemplate } from '../template';
import { LOCAL_ACCOUNT, LOCAL_CREDENTIALS, LOCAL_REGION, ResolvedResource } from '../types';

/** A running local SQS. */
export interface LocalSqs {
  /** Base URL, e.g. `http://127.0.0.1:40123` (no trailing slash). */
  readonly endpoint: string;
  stop(): Promise<void>;
}

/** The child: fauxqs with the store changes described above, listening on 127.0.0.1, port 0. */
const CHILD_SCRIPT = `
import { buildApp } from 'fauxqs';
const { SqsStore } = await import(new URL('./sqs/sqsStore.js', import.meta.resolve('fauxqs')).href);
const ACCOUNT = '${LOCAL_ACCOUNT}';
if (typeof SqsStore?.prototype?.getQueue !== 'function' || typeof SqsStore.prototype.buildQueueUrl !== 'function') {
  throw new Error('fauxqs internals changed: SqsStore.getQueue / buildQueueUrl not found (pinned to fauxqs ~1.9.2)');
}
SqsStore.prototype.buildQueueUrl = function (name, _port, requestHost) {
  return 'http://' + requestHost + '/' + ACCOUNT + '/' + name;
};
const getQueueExactly = SqsStore.prototype.getQueue;
SqsStore.prototype.getQueue = function (url) {
  const exact = getQueueExactly.call(this, url);
  if (exact || typeof url !== 'string') return exact;
  let pathname;
  try { pathname = new URL(url).pathname; } catch { return undefined; }
  const match = /^\\/(\\d{12})\\/([^/]+)$/.exec(pathname);
  return match && match[1] === ACCOUNT ? this.getQueueByName(match[2]) : undefined;
};
const app = buildApp({ logger: false });
await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(JSON.stringify({ port: app.server.address().port }) + '\\n');
process.stdin.on('end', () => { app.close().finally(() => process.exit(0)); });
process.stdin.resume();
`;

const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 3_000;

/** Starts fauxqs on 127.0.0.1 with a free port and its logger off. */
export async function startSqs(): Promise<LocalSqs> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD_SCRIPT], {
    // Bare `fauxqs` resolves from the working directory of an `-e` module.
    cwd: packageRootWith('fauxqs'),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const port = await readPort(child);
  // After start-up the child is silent: anything on stderr, or an exit nobody asked for, is a crash
  // worth seeing (every later SQS call would fail with a connection error otherwise unexplained).
  let stopping = false;
  child.stdout!.resume();
  child.stderr!.on('data', (chunk: Buffer) => process.stderr.write(`[local sqs] ${chunk.toString()}`));
  child.once('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`[local sqs] fauxqs exited unexpectedly (code ${code}, signal ${signal})\n`);
    }
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: () => {
      stopping = true;
      return stopChild(child);
    },
  };
}

/**
 * Creates every AWS::SQS::Queue of the template (dead-letter queues first) with its attributes,
 * and checks that the emulator's URL and ARN are the ones the template resolved.
 */
export async function createQueues(template: LocalTemplate, endpoint: string): Promise<void> {
  const client = new SQSClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  try {
    for (const queue of deadLetterQueuesFirst(template)) {
      const name = template.nameOf(queue.logicalId);
      const created = await client.send(new CreateQueueCommand({ QueueName: name, Attributes: queueAttributes(template, queue) }));
      const attributes = await client.send(new GetQueueAttributesCommand({ QueueUrl: created.QueueUrl, AttributeNames: ['QueueArn'] }));
      const expected = { url: template.queueUrlOf(queue.logicalId), arn: template.arnOf(queue.logicalId) };
      if (created.QueueUrl !== expected.url || attributes.Attributes?.QueueArn !== expected.arn) {
        throw new Error(`Queue ${queue.logicalId} was created as ${created.QueueUrl} (${attributes.Attributes?.QueueArn}), `
          + `but the template resolves it to ${expected.url} (${expected.arn}): is the template loaded with endpoints.sqs = ${endpoint}?`);
      }
    }
  } finally {
    client.destroy();
  }
}

/** Properties the emulator applies, as SQS queue attributes. */
const APPLIED_PROPERTIES = [
  'DelaySeconds', 'MaximumMessageSize', 'MessageRetentionPeriod', 'ReceiveMessageWaitTimeSeconds',
  'VisibilityTimeout', 'FifoQueue', 'ContentBasedDeduplication', 'DeduplicationScope', 'FifoThroughputLimit',
];

/**
 * Properties knowingly left out: encryption (fauxqs stores messages in memory, unencrypted, and has
 * no KMS), the redrive allow-list (no cross-queue permission checks locally) and tags.
 */
const IGNORED_PROPERTIES = [
  'KmsMasterKeyId', 'KmsDataKeyReusePeriodSeconds', 'SqsManagedSseEnabled', 'RedriveAllowPolicy', 'Tags',
];

/**
 * SQS's default MaximumMessageSize, bytes (256 KiB). A queue can allow up to 1 MiB, but only when it
 * says so: fauxqs defaults to 1 MiB, so a queue whose template omits the attribute gets AWS's default
 * here, and a larger SendMessage is refused as SQS refuses it (`InvalidParameterValue`, "Message must
 * be shorter than 262144 bytes"). See MaximumMessageSize in
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html and
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html
 */
export const SQS_DEFAULT_MAXIMUM_MESSAGE_SIZE = 262_144;

/** The CreateQueue attributes of one queue; fails on a property the emulator would silently not honour. */
export function queueAttributes(template: LocalTemplate, queue: ResolvedResource): Record<string, string> {
  const attributes: Record<string, string> = { MaximumMessageSize: String(SQS_DEFAULT_MAXIMUM_MESSAGE_SIZE) };
  for (const [key, value] of Object.entries(queue.properties)) {
    if (key === 'QueueName' || IGNORED_PROPERTIES.includes(key)) {
      continue;
    }
    if (key === 'RedrivePolicy') {
      attributes.RedrivePolicy = redrivePolicy(template, queue, value);
    } else if (APPLIED_PROPERTIES.includes(key)) {
      attributes[key] = String(value);
    } else {
      throw new Error(`Cannot run queue ${queue.logicalId} locally: property ${key} is not supported by the local SQS`);
    }
  }
  return attributes;
}

/** RedrivePolicy as the JSON string SQS takes, checking that its dead-letter queue is in the stack. */
function redrivePolicy(template: LocalTemplate, queue: ResolvedResource, value: unknown): string {
  // CloudFormation takes the policy as an object or as a JSON string.
  const policy = (typeof value === 'string' ? JSON.parse(value) : value) as { deadLetterTargetArn?: string; maxReceiveCount?: number };
  const dlq = policy.deadLetterTargetArn === undefined ? undefined : template.findByArn(policy.deadLetterTargetArn);
  if (!dlq || dlq.type !== 'AWS::SQS::Queue' || policy.maxReceiveCount === undefined) {
    throw new Error(`Cannot run queue ${queue.logicalId} locally: RedrivePolicy ${JSON.stringify(policy)} must name a queue of this stack and a maxReceiveCount`);
  }
  return JSON.stringify({ deadLetterTargetArn: policy.deadLetterTargetArn, maxReceiveCount: Number(policy.maxReceiveCount) });
}

/** Queues ordered so that every dead-letter queue comes before the queues that redrive to it. */
function deadLetterQueuesFirst(template: LocalTemplate): ResolvedResource[] {
  const ordered: ResolvedResource[] = [];
  const visit = (queue: ResolvedResource, chain: string[]): void => {
    if (ordered.includes(queue)) {
      return;
    }
    if (chain.includes(queue.logicalId)) {
      throw new Error(`Dead-letter queues form a cycle: ${[...chain, queue.logicalId].join(' -> ')}`);
    }
    const target = redriveTargetArn(queue.properties.RedrivePolicy);
    const dlq = target === undefined ? undefined : template.findByArn(target);
    if (dlq && dlq.type === 'AWS::SQS::Queue') {
      visit(dlq, [...chain, queue.logicalId]);
    }
    ordered.push(queue);
  };
  for (const queue of template.ofType('AWS::SQS::Queue')) {
    visit(queue, []);
  }
  return ordered;
}

function redriveTargetArn(policy: unknown): string | undefined {
  const parsed = typeof policy === 'string' ? JSON.parse(policy) : policy;
  return (parsed as { deadLetterTargetArn?: string } | undefined)?.deadLetterTargetArn;
}

/** The nearest directory from here upwards whose node_modules holds the package. */
function packageRootWith(pkg: string): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'node_modules', pkg, 'package.json'))) {
      return dir;
    }
    if (path.dirname(dir) === dir) {
      throw new Error(`Cannot find node_modules/${pkg} above ${__dirname}: install the devDependencies`);
    }
  }
}

/** Resolves with the port the child prints once it listens; rejects with its stderr if it dies first. */
function readPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const fail = (reason: string): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`Local SQS (fauxqs) did not start: ${reason}${stderr ? `\n${stderr}` : ''}`));
    };
    const timer = setTimeout(() => fail(`no port after ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    const onStderr = (chunk: Buffer): void => {
      stderr += chunk.toString();
    };
    const onExit = (code: number | null): void => fail(`exited with code ${code}`);
    const onStdout = (chunk: Buffer): void => {
      stdout += chunk.toString();
      const newline = stdout.indexOf('\n');
      if (newline < 0) {
        return;
      }
      clearTimeout(timer);
      child.stdout!.off('data', onStdout);
      child.stderr!.off('data', onStderr);
      child.off('exit', onExit);
      resolve((JSON.parse(stdout.slice(0, newline)) as { port: number }).port);
    };
    child.stdout!.on('data', onStdout);
    child.stderr!.on('data', onStderr);
    child.once('exit', onExit);
    child.once('error', (e) => fail(e.message));
  });
}

/** Closing stdin asks the child to close fauxqs and exit; it is killed if it has not within a few seconds. */
function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.stdin!.end();
  });
}
