/**
 * Local Secrets Manager: a small HTTP server speaking the Secrets Manager JSON 1.1 protocol for
 * GetSecretValue only, so handlers read secrets with the real SDK (AWS_ENDPOINT_URL_SECRETS_MANAGER)
 * and do not branch on "local". No emulator was checked for Secrets Manager (BUILD-NOTES).
 *
 * A secret is known by its ARN and its name. Local ARNs have no random suffix
 * (`arn:aws:secretsmanager:<region>:<account>:secret:<name>`), which is also what LocalTemplate
 * resolves `Ref` of an AWS::SecretsManager::Secret to.
 */
import { randomUUID } from 'crypto';
import * as http from 'http';
import { AddressInfo } from 'net';
import { LOCAL_ACCOUNT, LOCAL_REGION } from '../types';

/** A running local Secrets Manager. */
export interface LocalSecretsManager {
  /** Base URL, e.g. `http://127.0.0.1:40123` (no trailing slash). */
  readonly endpoint: string;
  stop(): Promise<void>;
  /** Creates a secret, or gives an existing one a new value (and a new VersionId). */
  set(idOrArn: string, value: string): void;
}

interface Secret {
  readonly arn: string;
  readonly name: string;
  value: string;
  versionId: string;
  createdDate: number;
}

const SECRET_ARN_PREFIX = `arn:aws:secretsmanager:${LOCAL_REGION}:${LOCAL_ACCOUNT}:secret:`;

/** Starts the server on 127.0.0.1 with a free port, holding `secrets` (keyed by ARN or name). */
export async function startSecretsManager(secrets: Record<string, string>): Promise<LocalSecretsManager> {
  const store = new SecretStore();
  for (const [idOrArn, value] of Object.entries(secrets)) {
    store.set(idOrArn, value);
  }
  const server = http.createServer((req, res) => {
    readBody(req).then((body) => respond(res, handle(store, req.headers['x-amz-target'], body)), () => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    set: (idOrArn, value) => store.set(idOrArn, value),
    stop: () => new Promise<void>((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
      // Keep-alive sockets of SDK clients would hold close() open until they time out.
      server.closeAllConnections();
    }),
  };
}

/** Secrets by ARN and by name. */
class SecretStore {
  private readonly byArn = new Map<string, Secret>();
  private readonly byName = new Map<string, Secret>();

  public set(idOrArn: string, value: string): void {
    const existing = this.find(idOrArn);
    if (existing) {
      existing.value = value;
      existing.versionId = randomUUID();
      return;
    }
    const name = idOrArn.startsWith('arn:') ? nameFromArn(idOrArn) : idOrArn;
    const arn = idOrArn.startsWith('arn:') ? idOrArn : `${SECRET_ARN_PREFIX}${name}`;
    const secret = { arn, name, value, versionId: randomUUID(), createdDate: Date.now() / 1000 };
    this.byArn.set(arn, secret);
    this.byName.set(name, secret);
  }

  public find(secretId: string): Secret | undefined {
    return this.byArn.get(secretId) ?? this.byName.get(secretId);
  }
}

interface Reply {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

/** Dispatches on the X-Amz-Target header; only GetSecretValue is served. */
function handle(store: SecretStore, target: string | string[] | undefined, rawBody: string): Reply {
  if (target !== 'secretsmanager.GetSecretValue') {
    return awsError('UnknownOperationException', `The local Secrets Manager serves only GetSecretValue (got ${String(target)})`);
  }
  let input: { SecretId?: unknown; VersionId?: unknown; VersionStage?: unknown };
  try {
    input = JSON.parse(rawBody || '{}');
  } catch {
    return awsError('SerializationException', 'The request body is not JSON');
  }
  if (typeof input.SecretId !== 'string') {
    return awsError('InvalidParameterException', 'SecretId is required');
  }
  const secret = store.find(input.SecretId);
  // Only the current version exists locally.
  const otherVersion = (input.VersionId !== undefined && input.VersionId !== secret?.versionId)
    || (input.VersionStage !== undefined && input.VersionStage !== 'AWSCURRENT');
  if (!secret || otherVersion) {
    return awsError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
  }
  return {
    status: 200,
    body: {
      ARN: secret.arn,
      Name: secret.name,
      SecretString: secret.value,
      VersionId: secret.versionId,
      VersionStages: ['AWSCURRENT'],
      CreatedDate: secret.createdDate,
    },
  };
}

/** An error shaped as AWS JSON protocols shape them: status 400, `__type` and `message`. */
function awsError(type: string, message: string): Reply {
  return { status: 400, body: { __type: type, message } };
}

function respond(res: http.ServerResponse, reply: Reply): void {
  const payload = JSON.stringify(reply.body);
  res.writeHead(reply.status, {
    'content-type': 'application/x-amz-json-1.1',
    'content-length': Buffer.byteLength(payload),
    'x-amzn-requestid': randomUUID(),
    ...(reply.status >= 400 ? { 'x-amzn-errortype': String(reply.body.__type) } : {}),
  });
  res.end(payload);
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** `arn:aws:secretsmanager:region:account:secret:name` -> `name` (everything after `:secret:`, as local ARNs have no suffix). */
function nameFromArn(arn: string): string {
  const marker = ':secret:';
  const i = arn.indexOf(marker);
  if (i < 0) {
    throw new Error(`Not a Secrets Manager secret ARN: ${arn}`);
  }
  return arn.slice(i + marker.length);
}
