/**
 * LocalTemplate on the real example app, synthesized into a temporary directory: local identities,
 * resolved definitions, and loud failures on what the local runtime cannot execute.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { buildExampleApp } from '../../examples/app';
import { CloudFormationTemplate, LocalTemplate } from '../../local/template';
import { LOCAL_ACCOUNT, LOCAL_REGION, LocalEndpoints } from '../../local/types';

const STACK = 'AsyncExternalApiExample';
const ENDPOINTS: LocalEndpoints = {
  sqs: 'http://127.0.0.1:4566',
  dynamodb: 'http://127.0.0.1:4567',
  sfn: 'http://127.0.0.1:4568',
  secretsManager: 'http://127.0.0.1:4569',
};

/** A queue named `jobs`, for the in-memory templates. */
const JOBS_QUEUE = { Type: 'AWS::SQS::Queue', Properties: { QueueName: 'jobs' } };

let outdir: string;
let template: LocalTemplate;

/** The logical id of the one resource of `type` whose id starts with `prefix`. */
function idOf(type: string, prefix: string): string {
  const matches = template.ofType(type).filter((r) => r.logicalId.startsWith(prefix));
  expect(matches.map((r) => r.logicalId)).toHaveLength(1);
  return matches[0].logicalId;
}

/** A one-stack template in memory. */
function localTemplate(resources: CloudFormationTemplate['Resources'], extra: Partial<CloudFormationTemplate> = {}): LocalTemplate {
  return LocalTemplate.fromTemplate({ Resources: resources, ...extra }, ENDPOINTS, { stackName: 'Unit' });
}

/** Every key of a value, at any depth. */
function keysOf(value: unknown): string[] {
  if (Array.isArray(value)) {
    return value.flatMap(keysOf);
  }
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([k, v]) => [k, ...keysOf(v)]);
  }
  return [];
}

beforeAll(() => {
  outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'local-template-'));
  buildExampleApp({}, outdir).app.synth();
  template = LocalTemplate.load(outdir, STACK, ENDPOINTS);
}, 30_000);

afterAll(() => {
  fs.rmSync(outdir, { recursive: true, force: true });
});

describe('the example app', () => {
  test('resolves every intrinsic of every executed resource', () => {
    const executed = template.resources.filter((r) => !template.notModeled().some((line) => line.includes(` ${r.logicalId} `)));
    expect(executed.length).toBeGreaterThan(20);
    for (const resource of executed) {
      expect(keysOf(resource.properties).filter((k) => k === 'Ref' || k.startsWith('Fn::'))).toEqual([]);
    }
  });

  test('lists what it keeps but does not model, with construct paths', () => {
    const notModeled = template.notModeled();
    expect(notModeled).toContainEqual(expect.stringMatching(/^AWS::IAM::Policy VendorDispatchRoleDefaultPolicy\w+ \[construct \/AsyncExternalApiExample\/Vendor\/Dispatch\//));
    expect(notModeled.map((line) => line.split(' ')[0]).sort()).toEqual(expect.arrayContaining(['AWS::CloudWatch::Alarm', 'AWS::Logs::LogGroup', 'AWS::SQS::QueuePolicy']));
    expect(notModeled.some((line) => line.startsWith('AWS::SQS::Queue '))).toBe(false);
  });

  test('gives queues path-style local URLs and ARNs', () => {
    const id = idOf('AWS::SQS::Queue', 'VendorConsumerRequestQueue');
    expect(template.nameOf(id)).toBe(id);
    expect(template.queueUrlOf(id)).toBe(`http://127.0.0.1:4566/${LOCAL_ACCOUNT}/${id}`);
    expect(template.arnOf(id)).toBe(`arn:aws:sqs:${LOCAL_REGION}:${LOCAL_ACCOUNT}:${id}`);
    expect(template.getAtt(id, 'QueueUrl')).toBe(template.queueUrlOf(id));
    expect(template.get(id).properties.RedrivePolicy).toEqual({
      deadLetterTargetArn: template.arnOf(idOf('AWS::SQS::Queue', 'VendorConsumerRequestDeadLetterQueue')),
      maxReceiveCount: 10,
    });
  });

  test('resolves the dispatch definition with the queue URLs and table name inside', () => {
    const dispatch = template.definitionOf(idOf('AWS::StepFunctions::StateMachine', 'VendorDispatch'));
    expect(dispatch.States.RequeueWithDelay.Parameters.QueueUrl).toBe(template.queueUrlOf(idOf('AWS::SQS::Queue', 'VendorConsumerRequestQueue')));
    expect(dispatch.States.ParkInDeadLetterQueue.Parameters.QueueUrl).toBe(template.queueUrlOf(idOf('AWS::SQS::Queue', 'VendorConsumerRequestDeadLetterQueue')));
    expect(dispatch.States.ClaimRequest.Parameters.TableName).toBe(template.nameOf(idOf('AWS::DynamoDB::Table', 'VendorCorrelationTable')));
    expect(dispatch.States.ClaimRequest.Resource).toBe('arn:aws:states:::dynamodb:updateItem');
  });

  test('puts the webhook URL and the proxy endpoint into the dispatch definition', () => {
    const apiId = template.ref(idOf('AWS::ApiGateway::RestApi', 'VendorWebhook'));
    expect(apiId).toBe(idOf('AWS::ApiGateway::RestApi', 'VendorWebhook').toLowerCase());
    const dispatch = template.definitionOf(idOf('AWS::StepFunctions::StateMachine', 'VendorDispatch'));
    // Each request's capability URL: the webhook URL and the token ClaimRequest stored.
    expect(dispatch.States.AddCallbackUrl.Parameters.fields['callbackUrl.$'])
      .toBe(`States.Format('{}/{}', 'https://${apiId}.execute-api.us-east-1.amazonaws.com/webhook/callback', $.claimed.callbackToken)`);
    expect(template.output('WebhookUrl')).toBe(`https://${apiId}.execute-api.us-east-1.amazonaws.com/webhook/callback`);
    // The vendor caller (PacingPoint.VENDOR_CALL) calls the proxy's stage URL.
    const proxyId = template.ref(idOf('AWS::ApiGateway::RestApi', 'VendorProxy'));
    const caller = template.get(idOf('AWS::Lambda::Function', 'VendorDispatchVendorCaller'));
    expect(dispatch.States.CallVendor.Parameters.FunctionName).toBe(template.arnOf(caller.logicalId));
    expect(caller.properties.Environment.Variables.PROXY_ENDPOINT_URL).toBe(`https://${proxyId}.execute-api.us-east-1.amazonaws.com/vendor/`);
  });

  test('hands the main workflow the request queue URL', () => {
    const main = template.definitionOf(idOf('AWS::StepFunctions::StateMachine', 'MainWorkflow'));
    expect(main.States.SubmitJob.Parameters.QueueUrl).toBe(template.queueUrlOf(idOf('AWS::SQS::Queue', 'VendorConsumerRequestQueue')));
    expect(main.States.SubmitJob.Resource).toBe('arn:aws:states:::sqs:sendMessage.waitForTaskToken');
  });

  test('returns a fresh definition on every call', () => {
    const id = idOf('AWS::StepFunctions::StateMachine', 'MainWorkflow');
    template.definitionOf(id).States = {};
    expect(Object.keys(template.definitionOf(id).States)).toContain('SubmitJob');
  });

  test('names state machines, functions and roles by logical id', () => {
    const dispatch = idOf('AWS::StepFunctions::StateMachine', 'VendorDispatch');
    expect(template.arnOf(dispatch)).toBe(`arn:aws:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:stateMachine:${dispatch}`);
    expect(template.ref(dispatch)).toBe(template.arnOf(dispatch));
    const consumer = template.get(idOf('AWS::Lambda::Function', 'VendorConsumerFunction'));
    expect(consumer.properties.Environment.Variables).toMatchObject({
      STATE_MACHINE_ARN: template.arnOf(dispatch),
      PACER_TABLE_NAME: template.nameOf(idOf('AWS::DynamoDB::Table', 'VendorConsumerPacerTable')),
      DEAD_LETTER_QUEUE_URL: template.queueUrlOf(idOf('AWS::SQS::Queue', 'VendorConsumerRequestDeadLetterQueue')),
    });
    expect(template.arnOf(consumer.logicalId)).toBe(`arn:aws:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT}:function:${consumer.logicalId}`);
    const role = idOf('AWS::IAM::Role', 'VendorDispatchRole');
    expect(template.get(dispatch).properties.RoleArn).toBe(`arn:aws:iam::${LOCAL_ACCOUNT}:role/${role}`);
  });

  test('resolves the proxy resource policy to the vendor caller\'s role ARN', () => {
    const policy = template.get(idOf('AWS::ApiGateway::RestApi', 'VendorProxy')).properties.Policy;
    expect(policy.Statement[1].Condition.ArnNotEquals['aws:PrincipalArn']).toEqual([template.arnOf(idOf('AWS::IAM::Role', 'VendorDispatchVendorCallerServiceRole'))]);
    expect(policy.Statement[0].Principal.AWS).toBe(`arn:aws:iam::${LOCAL_ACCOUNT}:root`);
  });

  test('resolves API Gateway ids, stages and the SQS integration URI', () => {
    const api = idOf('AWS::ApiGateway::RestApi', 'VendorWebhook');
    const callbackId = template.ofType('AWS::ApiGateway::Resource').find((r) => r.properties.PathPart === 'callback')!.logicalId;
    const callback = template.get(callbackId);
    expect(callback.properties).toMatchObject({ ParentId: `${api.toLowerCase()}-root`, RestApiId: api.toLowerCase(), PathPart: 'callback' });
    const token = template.get(idOf('AWS::ApiGateway::Resource', 'VendorWebhookcallbacktoken'));
    expect(token.properties).toMatchObject({ ParentId: template.ref(callbackId), PathPart: '{token}' });
    const stage = template.get(idOf('AWS::ApiGateway::Stage', 'VendorWebhookDeploymentStage'));
    expect(template.ref(stage.logicalId)).toBe('webhook');
    expect(stage.properties.DeploymentId).toBe(idOf('AWS::ApiGateway::Deployment', 'VendorWebhookDeployment'));
    const method = template.get(idOf('AWS::ApiGateway::Method', 'VendorWebhookcallbacktokenPOST'));
    const queueName = template.nameOf(idOf('AWS::SQS::Queue', 'VendorWebhookCallbackQueue'));
    expect(method.properties.Integration.Uri).toBe(`arn:aws:apigateway:${LOCAL_REGION}:sqs:path/${LOCAL_ACCOUNT}/${queueName}`);
  });

  test('finds resources by the ARNs and names handlers receive', () => {
    const queue = idOf('AWS::SQS::Queue', 'VendorWebhookCallbackQueue');
    const mapping = template.ofType('AWS::Lambda::EventSourceMapping').find((m) => m.properties.EventSourceArn === template.arnOf(queue));
    expect(template.findByArn(mapping!.properties.EventSourceArn)?.logicalId).toBe(queue);
    expect(template.findByName(mapping!.properties.FunctionName)?.type).toBe('AWS::Lambda::Function');
    expect(template.findByName(template.nameOf(queue), 'AWS::SQS::Queue')?.logicalId).toBe(queue);
    expect(template.findByArn('arn:aws:sqs:us-east-1:000000000000:Nope')).toBeUndefined();
    expect(template.findByName('Nope')).toBeUndefined();
  });

  test('finds each function\'s code in the assembly', () => {
    for (const fn of template.ofType('AWS::Lambda::Function')) {
      const dir = template.assetDir(fn.logicalId);
      expect(path.isAbsolute(dir)).toBe(true);
      expect(dir.startsWith(fs.realpathSync(outdir)) || dir.startsWith(outdir)).toBe(true);
      expect(fs.existsSync(path.join(dir, 'index.js'))).toBe(true);
    }
  });

  test('fails on look-ups it cannot answer, naming the id', () => {
    expect(() => template.get('Missing')).toThrow(/has no resource Missing/);
    expect(() => template.queueUrlOf(idOf('AWS::DynamoDB::Table', 'VendorCorrelationTable'))).toThrow(/is a AWS::DynamoDB::Table, not a AWS::SQS::Queue/);
    expect(() => template.assetDir(idOf('AWS::SQS::Queue', 'VendorWebhookCallbackQueue'))).toThrow(/not a AWS::Lambda::Function/);
    expect(() => template.arnOf(idOf('AWS::ApiGateway::RestApi', 'VendorWebhook'))).toThrow(/has no local ARN/);
  });
});

describe('load', () => {
  test('fails when the assembly has no template for the stack', () => {
    expect(() => LocalTemplate.load(outdir, 'NoSuchStack', ENDPOINTS)).toThrow(/No template for stack NoSuchStack/);
  });
});

describe('intrinsics', () => {
  test('resolves Fn::Sub in both forms, Fn::Select, Fn::Split, Fn::Join and pseudo parameters', () => {
    const t = localTemplate({
      Jobs: JOBS_QUEUE,
      Fn: {
        Type: 'AWS::Lambda::Function',
        Properties: {
          Environment: {
            Variables: {
              SHORT: { 'Fn::Sub': '${AWS::Region}/${Jobs.Arn}/${Jobs}/${!Literal}/${AWS::StackName}' },
              LONG: { 'Fn::Sub': ['${Prefix}-${AWS::AccountId}', { Prefix: { Ref: 'Jobs' } }] },
              SELECT: { 'Fn::Select': [1, { 'Fn::Split': [':', { 'Fn::GetAtt': 'Jobs.Arn' }] }] },
              JOIN: { 'Fn::Join': ['.', [{ Ref: 'AWS::Partition' }, { Ref: 'AWS::URLSuffix' }, { Ref: 'AWS::NoValue' }, 1]] },
              STACK_ID: { Ref: 'AWS::StackId' },
              GONE: { Ref: 'AWS::NoValue' },
            },
          },
        },
      },
    });
    expect(t.get('Fn').properties.Environment.Variables).toEqual({
      SHORT: 'us-east-1/arn:aws:sqs:us-east-1:000000000000:jobs/http://127.0.0.1:4566/000000000000/jobs/${Literal}/Unit',
      LONG: 'http://127.0.0.1:4566/000000000000/jobs-000000000000',
      SELECT: 'aws',
      JOIN: 'aws.amazonaws.com.1',
      STACK_ID: 'arn:aws:cloudformation:us-east-1:000000000000:stack/Unit/00000000-0000-0000-0000-000000000000',
    });
  });

  test('gives aliases, secrets, tables, log groups and FIFO queues their local identities', () => {
    const t = localTemplate({
      Fn: { Type: 'AWS::Lambda::Function', Properties: {} },
      Live: { Type: 'AWS::Lambda::Alias', Properties: { FunctionName: { Ref: 'Fn' }, Name: 'live' } },
      Key: { Type: 'AWS::SecretsManager::Secret', Properties: {} },
      Table: { Type: 'AWS::DynamoDB::Table', Properties: { TableName: 'orders' } },
      Logs: { Type: 'AWS::Logs::LogGroup', Properties: {} },
      Fifo: { Type: 'AWS::SQS::Queue', Properties: { FifoQueue: true } },
    });
    expect(t.ref('Live')).toBe('arn:aws:lambda:us-east-1:000000000000:function:Fn:live');
    expect(t.ref('Key')).toBe('arn:aws:secretsmanager:us-east-1:000000000000:secret:Key');
    expect(t.findByArn(t.ref('Key'))?.logicalId).toBe('Key');
    expect([t.ref('Table'), t.arnOf('Table')]).toEqual(['orders', 'arn:aws:dynamodb:us-east-1:000000000000:table/orders']);
    expect(t.getAtt('Logs', 'Arn')).toBe('arn:aws:logs:us-east-1:000000000000:log-group:Logs:*');
    expect(t.queueUrlOf('Fifo')).toBe('http://127.0.0.1:4566/000000000000/Fifo.fifo');
  });

  test('applies DefinitionSubstitutions to a state machine definition', () => {
    const t = localTemplate({
      Jobs: JOBS_QUEUE,
      Sm: {
        Type: 'AWS::StepFunctions::StateMachine',
        Properties: {
          DefinitionString: '{"StartAt":"A","States":{"A":{"Type":"Pass","Result":"${queue}","End":true}}}',
          DefinitionSubstitutions: { queue: { Ref: 'Jobs' } },
        },
      },
    });
    expect(t.definitionOf('Sm').States.A.Result).toBe('http://127.0.0.1:4566/000000000000/jobs');
  });

  test('uses a parameter\'s default, but not an SSM parameter name', () => {
    const describedBy = (ref: string): CloudFormationTemplate['Resources'] => ({ Fn: { Type: 'AWS::Lambda::Function', Properties: { Description: { Ref: ref } } } });
    const parameters = { Plain: { Type: 'String', Default: 'hello' }, Ssm: { Type: 'AWS::SSM::Parameter::Value<String>', Default: '/x' } };
    expect(localTemplate(describedBy('Plain'), { Parameters: parameters }).get('Fn').properties.Description).toBe('hello');
    expect(() => localTemplate(describedBy('Ssm'), { Parameters: parameters })).toThrow(/Ref Ssm: parameter of type AWS::SSM::Parameter::Value<String> has no local value/);
  });
});

describe('fails loudly', () => {
  test('on Fn::If, naming the resource, the property path and the construct', () => {
    expect(() => localTemplate({
      Worker: {
        Type: 'AWS::Lambda::Function',
        Metadata: { 'aws:cdk:path': '/Unit/Worker/Resource' },
        Properties: { Environment: { Variables: { MODE: { 'Fn::If': ['IsProd', 'a', 'b'] } } } },
      },
    })).toThrow('Cannot run Worker (AWS::Lambda::Function) [construct /Unit/Worker/Resource] locally: '
      + 'Properties.Environment.Variables.MODE.Fn::If: Fn::If is not supported by the local runtime');
  });

  test('on Fn::ImportValue inside a definition', () => {
    expect(() => localTemplate({
      Sm: { Type: 'AWS::StepFunctions::StateMachine', Properties: { DefinitionString: { 'Fn::Join': ['', ['{', { 'Fn::ImportValue': 'Shared' }, '}']] } } },
    })).toThrow(/Cannot run Sm \(AWS::StepFunctions::StateMachine\) locally: Properties\.DefinitionString\.Fn::Join\[1\]\[1\]\.Fn::ImportValue: Fn::ImportValue is not supported/);
  });

  test('on a condition on an executed resource', () => {
    expect(() => localTemplate({ Jobs: { Type: 'AWS::SQS::Queue', Condition: 'IsProd' } }))
      .toThrow(/Cannot run Jobs \(AWS::SQS::Queue\) locally: Condition: the resource has Condition IsProd/);
  });

  test('on an attribute the runtime does not model', () => {
    expect(() => localTemplate({
      Table: { Type: 'AWS::DynamoDB::Table', Properties: {} },
      Fn: { Type: 'AWS::Lambda::Function', Properties: { Description: { 'Fn::GetAtt': ['Table', 'StreamArn'] } } },
    })).toThrow(/Cannot run Fn \(AWS::Lambda::Function\) locally: Properties\.Description\.Fn::GetAtt: Fn::GetAtt Table\.StreamArn: attribute StreamArn of a AWS::DynamoDB::Table has no local value \(local attributes: Arn\)/);
  });

  test('on a reference to a resource that is not there', () => {
    expect(() => localTemplate({ Fn: { Type: 'AWS::Lambda::Function', Properties: { Role: { Ref: 'Ghost' } } } }))
      .toThrow(/Properties\.Role\.Ref: Ref Ghost: no resource, parameter or pseudo parameter of that name/);
  });

  test('on a resource type it neither executes nor knowingly leaves out', () => {
    expect(() => localTemplate({
      Stream: { Type: 'AWS::Kinesis::Stream', Metadata: { 'aws:cdk:path': '/Unit/Stream/Resource' } },
      Jobs: JOBS_QUEUE,
    })).toThrow(/Stack Unit has resources the local runtime cannot execute: AWS::Kinesis::Stream Stream \[construct \/Unit\/Stream\/Resource\]/);
  });

  test('but keeps resources it does not model as synthesized, whatever intrinsics they use', () => {
    const t = localTemplate({
      Policy: { Type: 'AWS::IAM::Policy', Properties: { PolicyName: { 'Fn::If': ['C', 'a', 'b'] } } },
    });
    expect(t.get('Policy').properties.PolicyName).toEqual({ 'Fn::If': ['C', 'a', 'b'] });
    expect(t.notModeled()).toEqual(['AWS::IAM::Policy Policy']);
  });

  test('on a function without an asset directory', () => {
    const t = localTemplate({ Inline: { Type: 'AWS::Lambda::Function', Properties: { Code: { ZipFile: 'exports.handler = 1' } } } });
    expect(() => t.assetDir('Inline')).toThrow(/Cannot run Inline \(AWS::Lambda::Function\) locally: no asset directory \(its code is inline/);
  });
});
