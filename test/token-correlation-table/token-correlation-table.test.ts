import { RemovalPolicy } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';
import { TokenCorrelationTable } from '../../src';
import { includesResource, resourcesGranted, statementsOfRole, testStack } from '../util';

function lambdaRole(scope: Construct, id = 'Grantee'): iam.Role {
  return new iam.Role(scope, id, { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
}

describe('TokenCorrelationTable', () => {
  test('creates an on-demand table keyed by requestId', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    new TokenCorrelationTable(stack, 'Table');

    // THEN
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::DynamoDB::Table', 1);
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [{ AttributeName: 'requestId', KeyType: 'HASH' }],
    });
  });

  test('enables point-in-time recovery by default', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    new TokenCorrelationTable(stack, 'Table');

    // THEN
    Template.fromStack(stack).hasResourceProperties('AWS::DynamoDB::Table', {
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
    });
  });

  test('disables point-in-time recovery when asked to', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    new TokenCorrelationTable(stack, 'Table', { pointInTimeRecovery: false });

    // THEN
    Template.fromStack(stack).hasResourceProperties('AWS::DynamoDB::Table', {
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: false },
    });
  });

  test('encrypts at rest with an AWS-managed key by default', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    new TokenCorrelationTable(stack, 'Table');

    // THEN
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      SSESpecification: { SSEEnabled: true },
    });
    template.resourceCountIs('AWS::KMS::Key', 0);
  });

  test('expires items through the TTL attribute expiresAt', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    new TokenCorrelationTable(stack, 'Table');

    // THEN
    Template.fromStack(stack).hasResourceProperties('AWS::DynamoDB::Table', {
      TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
    });
  });

  test('indexes jobId in ByJobId, projecting only taskToken and status', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    const table = new TokenCorrelationTable(stack, 'Table');

    // THEN
    expect(table.jobIdIndexName).toBe('ByJobId');
    Template.fromStack(stack).hasResourceProperties('AWS::DynamoDB::Table', {
      AttributeDefinitions: Match.arrayWith([
        { AttributeName: 'requestId', AttributeType: 'S' },
        { AttributeName: 'jobId', AttributeType: 'S' },
      ]),
      GlobalSecondaryIndexes: [
        {
          IndexName: 'ByJobId',
          KeySchema: [{ AttributeName: 'jobId', KeyType: 'HASH' }],
          Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['taskToken', 'status'] },
        },
      ],
    });
  });

  test('retains the table by default', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    new TokenCorrelationTable(stack, 'Table');

    // THEN
    Template.fromStack(stack).hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });

  test('uses the removal policy it is given', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    new TokenCorrelationTable(stack, 'Table', { removalPolicy: RemovalPolicy.DESTROY });

    // THEN
    Template.fromStack(stack).hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Delete',
    });
  });

  test('encrypts with the customer-managed key it is given', () => {
    // GIVEN
    const stack = testStack();
    const key = new kms.Key(stack, 'Key');

    // WHEN
    new TokenCorrelationTable(stack, 'Table', { encryptionKey: key });

    // THEN
    Template.fromStack(stack).hasResourceProperties('AWS::DynamoDB::Table', {
      SSESpecification: {
        SSEEnabled: true,
        SSEType: 'KMS',
        KMSMasterKeyId: { 'Fn::GetAtt': [stack.getLogicalId(key.node.defaultChild as kms.CfnKey), 'Arn'] },
      },
    });
  });

  test('creates a key when encryption is CUSTOMER_MANAGED without a key', () => {
    // GIVEN
    const stack = testStack();

    // WHEN
    new TokenCorrelationTable(stack, 'Table', { encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED });

    // THEN
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::KMS::Key', 1);
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      SSESpecification: Match.objectLike({ SSEEnabled: true, SSEType: 'KMS' }),
    });
  });

  test.each([
    dynamodb.TableEncryption.AWS_MANAGED,
    dynamodb.TableEncryption.DEFAULT,
  ])('fails if encryptionKey is given with encryption %s', (encryption) => {
    // GIVEN
    const stack = testStack();
    const key = new kms.Key(stack, 'Key');

    // WHEN / THEN
    expect(() => new TokenCorrelationTable(stack, 'Table', { encryption, encryptionKey: key }))
      .toThrow(/encryptionKey is only used with encryption CUSTOMER_MANAGED/);
  });

  test('grantWriteRequests lets the grantee update and read items of the table', () => {
    // GIVEN
    const stack = testStack();
    const table = new TokenCorrelationTable(stack, 'Table');
    const role = lambdaRole(stack);

    // WHEN
    table.grantWriteRequests(role);

    // THEN
    const template = Template.fromStack(stack);
    const statements = statementsOfRole(template, stack, role);
    const tableArn = stack.resolve(table.tableArn);
    expect(includesResource(resourcesGranted(statements, 'dynamodb:UpdateItem'), tableArn)).toBe(true);
    expect(includesResource(resourcesGranted(statements, 'dynamodb:GetItem'), tableArn)).toBe(true);
    expect(resourcesGranted(statements, 'dynamodb:DeleteItem')).toEqual([]);
    expect(resourcesGranted(statements, 'dynamodb:Scan')).toEqual([]);
  });

  test('grantResolveCallbacks lets the grantee query the job id index and update items', () => {
    // GIVEN
    const stack = testStack();
    const table = new TokenCorrelationTable(stack, 'Table');
    const role = lambdaRole(stack);

    // WHEN
    table.grantResolveCallbacks(role);

    // THEN
    const template = Template.fromStack(stack);
    const statements = statementsOfRole(template, stack, role);
    const tableArn = stack.resolve(table.tableArn);
    const indexArns = { 'Fn::Join': ['', [tableArn, '/index/*']] };
    expect(includesResource(resourcesGranted(statements, 'dynamodb:Query'), indexArns)).toBe(true);
    expect(includesResource(resourcesGranted(statements, 'dynamodb:UpdateItem'), tableArn)).toBe(true);
    expect(resourcesGranted(statements, 'dynamodb:DeleteItem')).toEqual([]);
  });

  test('grants use of the customer-managed key along with the table', () => {
    // GIVEN a table encrypted with a customer-managed key: DynamoDB calls KMS as the caller
    const stack = testStack();
    const key = new kms.Key(stack, 'Key');
    const table = new TokenCorrelationTable(stack, 'Table', { encryptionKey: key });
    const writer = lambdaRole(stack, 'Writer');
    const resolver = lambdaRole(stack, 'Resolver');

    // WHEN
    table.grantWriteRequests(writer);
    table.grantResolveCallbacks(resolver);

    // THEN both grantees may decrypt with the key, or every read and write fails with AccessDenied
    const template = Template.fromStack(stack);
    const keyArn = stack.resolve(key.keyArn);
    for (const role of [writer, resolver]) {
      const statements = statementsOfRole(template, stack, role);
      expect(includesResource(resourcesGranted(statements, 'kms:Decrypt'), keyArn)).toBe(true);
    }
  });

  describe('fromTokenCorrelationTableAttributes', () => {
    test('imports the table by name with the default index name', () => {
      // GIVEN
      const stack = testStack();

      // WHEN
      const imported = TokenCorrelationTable.fromTokenCorrelationTableAttributes(stack, 'Imported', { tableName: 'shared-correlations' });

      // THEN
      expect(imported.tableName).toBe('shared-correlations');
      expect(imported.jobIdIndexName).toBe('ByJobId');
      expect(stack.resolve(imported.tableArn)).toEqual({
        'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':dynamodb:us-east-1:123456789012:table/shared-correlations']],
      });
      Template.fromStack(stack).resourceCountIs('AWS::DynamoDB::Table', 0);
    });

    test('grants on an imported table cover the table and its index ARNs', () => {
      // GIVEN
      const stack = testStack();
      const imported = TokenCorrelationTable.fromTokenCorrelationTableAttributes(stack, 'Imported', {
        tableName: 'shared-correlations',
        jobIdIndexName: 'JobIds',
      });
      const role = lambdaRole(stack);

      // WHEN
      imported.grantResolveCallbacks(role);

      // THEN
      expect(imported.jobIdIndexName).toBe('JobIds');
      Template.fromStack(stack).hasResourceProperties('AWS::IAM::Policy', {
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Allow',
              Action: Match.arrayWith(['dynamodb:Query', 'dynamodb:UpdateItem']),
              Resource: [
                { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':dynamodb:us-east-1:123456789012:table/shared-correlations']] },
                { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':dynamodb:us-east-1:123456789012:table/shared-correlations/index/*']] },
              ],
            }),
          ]),
        },
        Roles: [{ Ref: stack.getLogicalId(role.node.defaultChild as iam.CfnRole) }],
      });
    });

    test('grants on an imported table with a key include the key', () => {
      // GIVEN
      const stack = testStack();
      const key = kms.Key.fromKeyArn(stack, 'Key', 'arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555');
      const imported = TokenCorrelationTable.fromTokenCorrelationTableAttributes(stack, 'Imported', {
        tableName: 'shared-correlations',
        encryptionKey: key,
      });
      const role = lambdaRole(stack);

      // WHEN
      imported.grantWriteRequests(role);

      // THEN
      const statements = statementsOfRole(Template.fromStack(stack), stack, role);
      expect(resourcesGranted(statements, 'kms:Decrypt')).toContain(key.keyArn);
    });
  });
});
