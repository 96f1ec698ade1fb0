import { RemovalPolicy, Resource } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';
import { CorrelationAttributes, JOB_ID_INDEX_NAME } from '../shared/messages';

/**
 * A table that maps requests to the workflows waiting for them.
 */
export interface ITokenCorrelationTable {
  /** The underlying DynamoDB table. */
  readonly table: dynamodb.ITable;
  /** Name of the table. */
  readonly tableName: string;
  /** ARN of the table. */
  readonly tableArn: string;
  /** Name of the global secondary index keyed on the vendor's job id. */
  readonly jobIdIndexName: string;

  /** Lets `grantee` record requests and job ids (the dispatch side). */
  grantWriteRequests(grantee: iam.IGrantable): iam.Grant;
  /** Lets `grantee` look tokens up by job id and mark requests completed (the callback side). */
  grantResolveCallbacks(grantee: iam.IGrantable): iam.Grant;
}

/**
 * Properties for a TokenCorrelationTable.
 */
export interface TokenCorrelationTableProps {
  /**
   * Encryption of the table at rest.
   *
   * @default dynamodb.TableEncryption.AWS_MANAGED
   */
  readonly encryption?: dynamodb.TableEncryption;

  /**
   * Customer-managed KMS key, when `encryption` is `CUSTOMER_MANAGED`.
   *
   * @default - a new key is created when `encryption` is `CUSTOMER_MANAGED`
   */
  readonly encryptionKey?: kms.IKey;

  /**
   * What happens to the table when it is removed from the stack.
   *
   * The table only holds in-flight correlations (they expire through TTL), so destroying it loses
   * only requests that are still waiting; keep RETAIN in production if that matters.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;

  /**
   * Point-in-time recovery.
   *
   * @default true
   */
  readonly pointInTimeRecovery?: boolean;
}

/**
 * Attributes to import an existing TokenCorrelationTable, e.g. one shared from another stack.
 */
export interface TokenCorrelationTableAttributes {
  /** Name of the table. */
  readonly tableName: string;
  /**
   * Name of the index on job id.
   *
   * @default 'ByJobId'
   */
  readonly jobIdIndexName?: string;
  /**
   * The key the table is encrypted with, if customer-managed.
   *
   * @default - AWS-owned or AWS-managed key: no KMS grants needed
   */
  readonly encryptionKey?: kms.IKey;
}

/**
 * Grants shared by the created and the imported table.
 */
abstract class TokenCorrelationTableBase extends Resource implements ITokenCorrelationTable {
  public abstract readonly table: dynamodb.ITable;
  public abstract readonly jobIdIndexName: string;

  public get tableName(): string {
    return this.table.tableName;
  }

  public get tableArn(): string {
    return this.table.tableArn;
  }

  public grantWriteRequests(grantee: iam.IGrantable): iam.Grant {
    // The dispatch workflow claims a request (conditional update) and stores the job id.
    this.table.encryptionKey?.grantEncryptDecrypt(grantee);
    return this.table.grant(grantee, 'dynamodb:UpdateItem', 'dynamodb:GetItem');
  }

  public grantResolveCallbacks(grantee: iam.IGrantable): iam.Grant {
    // Queries run against the job id index; `grant` covers the table and its indexes (not its key).
    this.table.encryptionKey?.grantEncryptDecrypt(grantee);
    return this.table.grant(grantee, 'dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:UpdateItem');
  }
}

/**
 * DynamoDB table that correlates a request with the workflow waiting for it (blog step 7).
 *
 * One item per request, keyed by request id (`requestId`), holding the main workflow's task
 * token (`taskToken`), the vendor's job id (`jobId`), a status and an expiry (`expiresAt`, the
 * table's TTL attribute). The global secondary index `ByJobId` finds the item for a vendor
 * callback; the key finds it by request id (idempotency). Both look-ups are exact and cost one
 * read. On-demand billing, point-in-time recovery and encryption at rest are on by default.
 */
export class TokenCorrelationTable extends TokenCorrelationTableBase {
  /**
   * Imports a table created elsewhere, e.g. in another stack.
   */
  public static fromTokenCorrelationTableAttributes(
    scope: Construct,
    id: string,
    attrs: TokenCorrelationTableAttributes,
  ): ITokenCorrelationTable {
    class Import extends TokenCorrelationTableBase {
      public readonly table = dynamodb.Table.fromTableAttributes(this, 'Resource', {
        tableName: attrs.tableName,
        globalIndexes: [attrs.jobIdIndexName ?? JOB_ID_INDEX_NAME],
        encryptionKey: attrs.encryptionKey,
      });
      public readonly jobIdIndexName = attrs.jobIdIndexName ?? JOB_ID_INDEX_NAME;
    }
    return new Import(scope, id);
  }

  public readonly table: dynamodb.ITable;
  public readonly jobIdIndexName: string = JOB_ID_INDEX_NAME;

  constructor(scope: Construct, id: string, props: TokenCorrelationTableProps = {}) {
    super(scope, id);

    if (props.encryptionKey && props.encryption !== undefined && props.encryption !== dynamodb.TableEncryption.CUSTOMER_MANAGED) {
      throw new Error(`encryptionKey is only used with encryption CUSTOMER_MANAGED (given encryption ${props.encryption}): drop encryptionKey or set encryption to CUSTOMER_MANAGED`);
    }

    const table = new dynamodb.Table(this, 'Resource', {
      partitionKey: { name: CorrelationAttributes.REQUEST_ID, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: props.pointInTimeRecovery ?? true },
      encryption: props.encryption ?? (props.encryptionKey ? dynamodb.TableEncryption.CUSTOMER_MANAGED : dynamodb.TableEncryption.AWS_MANAGED),
      encryptionKey: props.encryptionKey,
      timeToLiveAttribute: CorrelationAttributes.EXPIRES_AT,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });

    table.addGlobalSecondaryIndex({
      indexName: JOB_ID_INDEX_NAME,
      partitionKey: { name: CorrelationAttributes.JOB_ID, type: dynamodb.AttributeType.STRING },
      // The callback processor needs the token and the status; the table key comes with every index.
      projectionType: dynamodb.ProjectionType.INCLUDE,
      nonKeyAttributes: [CorrelationAttributes.TASK_TOKEN, CorrelationAttributes.STATUS],
    });
    this.table = table;
  }
}
