/**
 * What a contract's state is made of, shared by the consumer's own state (created under the
 * consumer, logical ids unchanged since before sharing existed) and `VendorContractState`. Not
 * exported from the library's index: its functions are internal.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { VendorContract } from './vendor-contract';

/**
 * The pacer table: the schedule of the contract (`pacer` item: next slot, named-limit cursors,
 * adaptive rate, the vendor's pause), the slot claims, the job places and the quota counters.
 *
 * Retained (DeletionPolicy and UpdateReplacePolicy `Retain`): it holds what a deploy must not reset
 * (the places of jobs still running at the vendor, the quota used this period), so a refactoring
 * that drops it from the template, or an update that would replace it, leaves it in the account
 * instead of deleting it with its counters
 * (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-attribute-deletionpolicy.html,
 * https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-attribute-updatereplacepolicy.html).
 * Its key schema and name are fixed here: nothing derived from the contract goes into a property
 * whose change replaces the table.
 */
export function createPacerTable(scope: Construct, id: string): dynamodb.Table {
  return new dynamodb.Table(scope, id, {
    partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    encryption: dynamodb.TableEncryption.AWS_MANAGED,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    // The vendor caller's slot claims (one short item per request, pacer.ts, claimSlot) and the quota
    // counters expire; the pacer item, the places and the drain leases have no such attribute and
    // stay. Turning TTL on updates the table in place (no replacement).
    timeToLiveAttribute: 'expiresAt', // PACER_TTL_ATTRIBUTE in pacer.ts (a handler module: not imported here)
    removalPolicy: RemovalPolicy.RETAIN,
  });
}

/**
 * The key settings table (issue 15; design docs/design/per-key-limits.md 2.2): one item per key
 * whose limits an operator overrides (`pk` = the key), read by the dispatchers only. Created only
 * when the contract has `perKey`, so other templates are unchanged.
 *
 * Retained like the pacer table: it holds operators' decisions (a key raised after the vendor raised
 * it, a key paused) that a deploy must not reset. On demand (read per active key, cached 30 s per
 * dispatcher), point-in-time recovery (an operator's bad bulk write can be rolled back), encrypted
 * like the pacer table. Its key schema is fixed here: nothing derived from the contract goes into a
 * property whose change replaces the table.
 */
export function createKeySettingsTable(scope: Construct, id: string): dynamodb.Table {
  return new dynamodb.Table(scope, id, {
    partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    encryption: dynamodb.TableEncryption.AWS_MANAGED,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    removalPolicy: RemovalPolicy.RETAIN,
  });
}

/**
 * What an operator's managing service may do on the key settings table: read and write single
 * items, nothing else, and never the pacer table (where a bad write could break a schedule).
 */
export function grantManageKeySettings(table: dynamodb.ITable, grantee: iam.IGrantable): iam.Grant {
  return table.grant(grantee, 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem');
}

/**
 * Every setting of a contract that the state it paces against depends on, in a form two
 * contracts can be compared by (and shown in an error).
 */
function contractTerms(contract: VendorContract): Record<string, unknown> {
  return {
    requestsPerSecond: contract.requestsPerSecond,
    maxJobsInFlight: contract.maxJobsInFlight,
    maxJobDuration: contract.maxJobDuration?.toHumanString(),
    quotas: contract.quotas.map((quota) => quota._spec()),
    whenQuotaExhausted: contract.quotas.length > 0 ? contract.whenQuotaExhausted : undefined,
    limits: contract.limits.map((limit) => limit._spec()),
    adaptivePacing: contract.adaptivePacing?._spec(contract.requestsPerSecond),
    // Issue 15: the per-key defaults, and whether the state has a key settings table at all.
    perKey: contract.perKey?._spec(),
  };
}

/**
 * Why a state made for `stateContract` cannot be shared by an orchestrator whose contract is
 * `contract` (one line per differing term), or an empty list when they agree.
 */
export function contractDifferences(contract: VendorContract, stateContract: VendorContract): string[] {
  const mine = contractTerms(contract);
  const theirs = contractTerms(stateContract);
  return Object.keys(mine)
    .filter((term) => JSON.stringify(mine[term]) !== JSON.stringify(theirs[term]))
    .map((term) => `${term}: ${JSON.stringify(mine[term]) ?? 'none'} here, ${JSON.stringify(theirs[term]) ?? 'none'} in the state`);
}
