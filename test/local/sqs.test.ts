/**
 * The local SQS (fauxqs) with the example app's queues: the URLs the template resolves are the
 * URLs the emulator serves, redrive and delays behave as on SQS.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  GetQueueAttributesCommand,
  PurgeQueueCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { buildExampleApp } from '../../examples/app';
import { createQueues, LocalSqs, queueAttributes, startSqs } from '../../local/aws/sqs';
import { LocalTemplate } from '../../local/template';
import { LOCAL_ACCOUNT, LOCAL_CREDENTIALS, LOCAL_REGION, LocalEndpoints } from '../../local/types';

const STACK = 'AsyncExternalApiExample';

let outdir: string;
let sqs: LocalSqs;
let template: LocalTemplate;
let client: SQSClient;

/** The logical id of the one queue whose id starts with `prefix`. */
function queueId(prefix: string): string {
  const matches = template.ofType('AWS::SQS::Queue').filter((q) => q.logicalId.startsWith(prefix));
  expect(matches).toHaveLength(1);
  return matches[0].logicalId;
}

beforeAll(async () => {
  outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'local-sqs-'));
  buildExampleApp({}, outdir).app.synth();
  sqs = await startSqs();
  const endpoints: LocalEndpoints = { sqs: sqs.endpoint, dynamodb: 'http://127.0.0.1:1', sfn: 'http://127.0.0.1:1', secretsManager: 'http://127.0.0.1:1' };
  template = LocalTemplate.load(outdir, STACK, endpoints);
  await createQueues(template, sqs.endpoint);
  client = new SQSClient({ endpoint: sqs.endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
}, 30_000);

afterAll(async () => {
  client?.destroy();
  await sqs?.stop();
  fs.rmSync(outdir, { recursive: true, force: true });
});

describe('startSqs', () => {
  test('listens on loopback', () => {
    expect(sqs.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });
});

describe('createQueues', () => {
  test('creates every queue of the template at the URL and ARN the template resolves', async () => {
    const queues = template.ofType('AWS::SQS::Queue');
    expect(queues).toHaveLength(4);
    for (const queue of queues) {
      const url = template.queueUrlOf(queue.logicalId);
      expect(url).toBe(`${sqs.endpoint}/${LOCAL_ACCOUNT}/${queue.logicalId}`);
      const { Attributes } = await client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
      expect(Attributes?.QueueArn).toBe(`arn:aws:sqs:${LOCAL_REGION}:${LOCAL_ACCOUNT}:${queue.logicalId}`);
    }
  });

  test('applies the synthesized attributes, with the redrive policy as JSON', async () => {
    const { Attributes } = await client.send(new GetQueueAttributesCommand({
      QueueUrl: template.queueUrlOf(queueId('VendorConsumerRequestQueue')),
      AttributeNames: ['All'],
    }));
    expect(Attributes?.VisibilityTimeout).toBe('180');
    expect(Attributes?.MessageRetentionPeriod).toBe('1209600');
    expect(JSON.parse(Attributes?.RedrivePolicy ?? '{}')).toEqual({
      deadLetterTargetArn: template.arnOf(queueId('VendorConsumerRequestDeadLetterQueue')),
      maxReceiveCount: 10,
    });
  });

  test('gives a queue without MaximumMessageSize SQS\'s default of 256 KiB, not the emulator\'s 1 MiB', () => {
    const queues = LocalTemplate.fromTemplate({
      Resources: {
        Plain: { Type: 'AWS::SQS::Queue', Properties: {} },
        Large: { Type: 'AWS::SQS::Queue', Properties: { MaximumMessageSize: 1048576 } },
      },
    }, { sqs: sqs.endpoint, dynamodb: '', sfn: '', secretsManager: '' }, { stackName: 'Sizes' });
    expect(queueAttributes(queues, queues.get('Plain')).MaximumMessageSize).toBe('262144');
    expect(queueAttributes(queues, queues.get('Large')).MaximumMessageSize).toBe('1048576');
  });

  test('fails on a queue property the local SQS would not honour', () => {
    const odd = LocalTemplate.fromTemplate({
      Resources: { Odd: { Type: 'AWS::SQS::Queue', Properties: { MessageSystemWhatever: 1 } } },
    }, { sqs: sqs.endpoint, dynamodb: '', sfn: '', secretsManager: '' }, { stackName: 'Odd' });
    expect(() => queueAttributes(odd, odd.get('Odd'))).toThrow(/Cannot run queue Odd locally: property MessageSystemWhatever/);
  });
});

describe('queue behaviour', () => {
  test('redrives a message to the dead-letter queue after maxReceiveCount receives', async () => {
    const queueUrl = template.queueUrlOf(queueId('VendorConsumerRequestQueue'));
    const dlqUrl = template.queueUrlOf(queueId('VendorConsumerRequestDeadLetterQueue'));
    await client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: 'poison' }));

    // WHEN the message is received and never deleted, maxReceiveCount (10) times.
    const counts: string[] = [];
    for (let i = 0; i < 10; i++) {
      const { Messages } = await client.send(new ReceiveMessageCommand({
        QueueUrl: queueUrl, VisibilityTimeout: 0, MessageSystemAttributeNames: ['ApproximateReceiveCount'],
      }));
      counts.push(Messages?.[0]?.Attributes?.ApproximateReceiveCount ?? 'none');
    }
    expect(counts).toEqual(['1', '2', '3', '4', '5', '6', '7', '8', '9', '10']);

    // THEN the next receive moves it to the dead-letter queue instead of returning it.
    const eleventh = await client.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, VisibilityTimeout: 0 }));
    expect(eleventh.Messages).toBeUndefined();
    const { Messages } = await client.send(new ReceiveMessageCommand({
      QueueUrl: dlqUrl, MessageSystemAttributeNames: ['ApproximateReceiveCount'],
    }));
    expect(Messages?.[0]?.Body).toBe('poison');
    // fauxqs keeps counting across the move: the 11th receive counted, this is the 12th.
    expect(Messages?.[0]?.Attributes?.ApproximateReceiveCount).toBe('12');
  });

  test('keeps a message sent with DelaySeconds invisible until the delay has passed', async () => {
    const queueUrl = template.queueUrlOf(queueId('VendorWebhookCallbackQueue'));
    const sentAt = Date.now();
    await client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: 'later', DelaySeconds: 1 }));

    const early = await client.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 0 }));
    expect(early.Messages).toBeUndefined();
    const { Attributes } = await client.send(new GetQueueAttributesCommand({
      QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessagesDelayed'],
    }));
    expect(Attributes?.ApproximateNumberOfMessagesDelayed).toBe('1');

    const late = await client.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 3 }));
    expect(late.Messages?.[0]?.Body).toBe('later');
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(950);
  });

  test('refuses a message over the queue\'s MaximumMessageSize (here the default, 256 KiB) as SQS does', async () => {
    const queueUrl = template.queueUrlOf(queueId('VendorConsumerRequestQueue'));
    const { Attributes } = await client.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['MaximumMessageSize'] }));
    expect(Attributes?.MaximumMessageSize).toBe('262144');
    // Body and attributes count: 262,144 bytes in all is the largest message.
    const attribute = { reason: { DataType: 'String', StringValue: 'x' } }; // 6 + 6 + 1 bytes
    const largest = 'a'.repeat(262_144 - 13);
    const fits = client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: largest, MessageAttributes: attribute }));
    await expect(fits).resolves.toBeDefined();
    const refused = client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: `${largest}a`, MessageAttributes: attribute }));
    await expect(refused).rejects.toMatchObject({
      name: expect.stringMatching(/InvalidParameterValue$/),
      message: 'One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.',
      $metadata: { httpStatusCode: 400 },
    });
    await client.send(new PurgeQueueCommand({ QueueUrl: queueUrl }));
  });

  test('returns message attributes even when the receive does not ask for them', async () => {
    const queueUrl = template.queueUrlOf(queueId('VendorWebhookCallbackDeadLetterQueue'));
    await client.send(new SendMessageCommand({
      QueueUrl: queueUrl,
      MessageBody: 'parked',
      MessageAttributes: {
        reason: { DataType: 'String', StringValue: 'PayloadNotAnObject' },
        attempt: { DataType: 'Number', StringValue: '3' },
      },
    }));
    // Real SQS returns message attributes only for the names in MessageAttributeNames; fauxqs
    // returns them all unless a non-"All" list filters them.
    const { Messages } = await client.send(new ReceiveMessageCommand({ QueueUrl: queueUrl }));
    expect(Messages?.[0]?.MessageAttributes).toEqual({
      reason: { DataType: 'String', StringValue: 'PayloadNotAnObject' },
      attempt: { DataType: 'Number', StringValue: '3' },
    });
    expect(Messages?.[0]?.Attributes).toBeUndefined();
  });
});

describe('queue URLs', () => {
  test('work from a client configured the way the handlers are (AWS_ENDPOINT_URL_SQS, no endpoint option)', async () => {
    const previous = process.env.AWS_ENDPOINT_URL_SQS;
    process.env.AWS_ENDPOINT_URL_SQS = sqs.endpoint;
    const envClient = new SQSClient({ region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
    try {
      const name = template.nameOf(queueId('VendorWebhookCallbackQueue'));
      const derived = `${process.env.AWS_ENDPOINT_URL_SQS}/${LOCAL_ACCOUNT}/${name}`;
      await envClient.send(new SendMessageCommand({ QueueUrl: derived, MessageBody: 'from-env' }));
      const { Messages } = await envClient.send(new ReceiveMessageCommand({ QueueUrl: derived }));
      expect(Messages?.[0]?.Body).toBe('from-env');
    } finally {
      envClient.destroy();
      if (previous === undefined) {
        delete process.env.AWS_ENDPOINT_URL_SQS;
      } else {
        process.env.AWS_ENDPOINT_URL_SQS = previous;
      }
    }
  });

  test('are looked up by account and name whatever the host, as SQS does', async () => {
    const name = template.nameOf(queueId('VendorConsumerRequestDeadLetterQueue'));
    const port = new URL(sqs.endpoint).port;
    const viaLocalhost = `http://localhost:${port}/${LOCAL_ACCOUNT}/${name}`;
    const { Attributes } = await client.send(new GetQueueAttributesCommand({ QueueUrl: viaLocalhost, AttributeNames: ['QueueArn'] }));
    expect(Attributes?.QueueArn).toBe(template.arnOf(queueId('VendorConsumerRequestDeadLetterQueue')));
  });

  test('of another account or an unknown queue do not exist', async () => {
    await expect(client.send(new SendMessageCommand({ QueueUrl: `${sqs.endpoint}/123456789012/VendorWebhookCallbackQueue`, MessageBody: 'x' })))
      .rejects.toThrow(/does not exist/i);
    await expect(client.send(new SendMessageCommand({ QueueUrl: `${sqs.endpoint}/${LOCAL_ACCOUNT}/NoSuchQueue`, MessageBody: 'x' })))
      .rejects.toThrow(/does not exist/i);
  });
});
