import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { createKeySettingsTable, createPacerTable, grantManageKeySettings } from './contract-state-resources';
import { VendorContract } from './vendor-contract';
import { DynamicDelay, DynamicDelayAttributes, DynamicDelayOptions, IDynamicDelay } from '../rate-controlled-queue-consumer/dynamic-delay';

/**
 * The state one vendor contract is kept with: the pacer table (the schedule of slots, the
 * named-limit cursors, the slot claims, the jobs-in-flight places, the quota counters, the
 * adaptive rate and the vendor's pause), the AppConfig configuration holding the rate in force
 * (`dynamicDelay`) and, with limits per key, the key settings table (each key's overrides). Every orchestrator given the same state paces against the one schedule, so
 * together they keep the contract once.
 */
export interface IVendorContractState {
  /** The contract the state was made for: an orchestrator under another contract is refused. */
  readonly contract: VendorContract;
  /** The pacer table. */
  readonly pacerTable: dynamodb.ITable;
  /**
   * The AppConfig configuration of the rate in force and the extra delay.
   *
   * @default - none: the contract's rate always
   */
  readonly dynamicDelay?: IDynamicDelay;
  /**
   * The key settings table (issue 15): each key's overrides of the contract's `perKey` limits.
   *
   * @default - none: the contract has no `perKey`
   */
  readonly keySettingsTable?: dynamodb.ITable;
}

/**
 * Properties of a VendorContractState.
 */
export interface VendorContractStateProps {
  /** The contract every orchestrator sharing this state keeps (they must each be given the same). */
  readonly contract: VendorContract;

  /**
   * Creates the AWS AppConfig configuration `{"extraDelayMs": N, "requestsPerSecond": R}` that
   * operators change at run time (README, "The rate at run time"); every orchestrator sharing the
   * state reads it. Give `{}` for the defaults.
   *
   * @default - no dynamic delay
   */
  readonly dynamicDelay?: DynamicDelayOptions;
}

/**
 * What identifies a state created elsewhere (another stack or app), for
 * `VendorContractState.fromVendorContractStateAttributes`.
 */
export interface VendorContractStateAttributes {
  /**
   * The contract the state was made for: the same `VendorContract.of({...})` the creating stack
   * used (share the code that builds it). It is what orchestrators given this state are checked
   * against; it cannot be read back from the account at synth time.
   */
  readonly contract: VendorContract;

  /**
   * The pacer table's name (`pacerTable.tableName` of the creating stack). Give this or `pacerTableArn`.
   *
   * @default - from `pacerTableArn`
   */
  readonly pacerTableName?: string;

  /**
   * The pacer table's ARN. Give this or `pacerTableName`.
   *
   * @default - from `pacerTableName`, in this stack's account and region
   */
  readonly pacerTableArn?: string;

  /**
   * The ids of its AppConfig configuration, when it has one (`dynamicDelay` of the creating stack).
   * `maxRequestsPerSecond` is the contract's.
   *
   * @default - none: the contract's rate always
   */
  readonly dynamicDelay?: DynamicDelayAttributes;

  /**
   * The key settings table's name (`keySettingsTable.tableName` of the creating stack), when the
   * contract has `perKey`. Give this or `keySettingsTableArn` then.
   *
   * @default - from `keySettingsTableArn`; none without `perKey`
   */
  readonly keySettingsTableName?: string;

  /**
   * The key settings table's ARN, when the contract has `perKey`. Give this or `keySettingsTableName` then.
   *
   * @default - from `keySettingsTableName`; none without `perKey`
   */
  readonly keySettingsTableArn?: string;
}

/**
 * The state of one vendor contract, shared by every orchestrator that calls the vendor under it
 * (two stacks, or the old and the new stack of a blue/green deploy): give each the same state
 * (`contractState`), and together they keep the contract's rate, jobs in flight and quotas once.
 * Another stack or app imports it with `fromVendorContractStateAttributes`.
 *
 * The pacer table is retained (a deploy, an upgrade or a removal from the template never deletes
 * it with its counters) and its logical id depends only on this construct's path.
 *
 * @example
 * declare const stack: Stack;
 * const contract = VendorContract.of({ requestsPerSecond: 10, maxJobsInFlight: 50 });
 * const contractState = new VendorContractState(stack, 'VendorState', { contract });
 * const vendorUrl = 'https://api.vendor.example/v1/jobs';
 * new AsyncExternalApiOrchestrator(stack, 'Orders', { contract, contractState, vendorUrl, callbackTimeout: Duration.hours(1) });
 * new AsyncExternalApiOrchestrator(stack, 'Invoices', { contract, contractState, vendorUrl, callbackTimeout: Duration.hours(1) });
 */
export class VendorContractState extends Construct implements IVendorContractState {
  /**
   * A state created by another stack or app, by its table and AppConfig ids: nothing is created;
   * the orchestrators given it are granted what they use of it.
   */
  public static fromVendorContractStateAttributes(scope: Construct, id: string, attrs: VendorContractStateAttributes): IVendorContractState {
    if ((attrs.pacerTableName === undefined) === (attrs.pacerTableArn === undefined)) {
      throw new Error(`VendorContractState.fromVendorContractStateAttributes '${id}': give the pacer table's name or its ARN, exactly one (given ${attrs.pacerTableName === undefined ? 'neither' : 'both'})`);
    }
    const keySettingsGiven = [attrs.keySettingsTableName, attrs.keySettingsTableArn].filter((v) => v !== undefined).length;
    if (attrs.contract.perKey && keySettingsGiven !== 1) {
      throw new Error(`VendorContractState.fromVendorContractStateAttributes '${id}': the contract has perKey, so give the key settings table's name or its ARN `
        + `(keySettingsTable of the creating stack), exactly one (given ${keySettingsGiven === 0 ? 'neither' : 'both'})`);
    }
    if (!attrs.contract.perKey && keySettingsGiven > 0) {
      throw new Error(`VendorContractState.fromVendorContractStateAttributes '${id}': a key settings table is given but the contract has no perKey: `
        + 'give the contract the creating stack used (with its perKey), or remove keySettingsTableName / keySettingsTableArn');
    }
    return new ImportedVendorContractState(scope, id, attrs);
  }

  public readonly contract: VendorContract;
  /** The pacer table (retained). */
  public readonly pacerTable: dynamodb.ITable;
  /**
   * The AppConfig configuration of the rate in force and the extra delay (a `DynamicDelay`: its
   * `operatorCommands()` change it for every orchestrator sharing the state).
   *
   * @default - none
   */
  public readonly dynamicDelay?: IDynamicDelay;
  /**
   * The key settings table (retained), when the contract has `perKey`: one item per key whose
   * limits an operator overrides (README, "Per-key limits: settings"). Every orchestrator sharing
   * the state reads it.
   *
   * @default - none without `perKey`
   */
  public readonly keySettingsTable?: dynamodb.ITable;

  constructor(scope: Construct, id: string, props: VendorContractStateProps) {
    super(scope, id);
    this.contract = props.contract;
    this.pacerTable = createPacerTable(this, 'PacerTable');
    if (props.contract.perKey) {
      this.keySettingsTable = createKeySettingsTable(this, 'KeySettingsTable');
    }
    if (props.dynamicDelay) {
      // The contract is the ceiling of the rate operators may set at run time (AppConfig refuses more).
      this.dynamicDelay = new DynamicDelay(this, 'DynamicDelay', { ...props.dynamicDelay, maxRequestsPerSecond: props.contract.requestsPerSecond });
    }
  }

  /**
   * Lets an operator's managing service (a console, a billing system) read and write the key
   * settings items: GetItem, PutItem, UpdateItem and DeleteItem on the key settings table only.
   * Throws when the contract has no `perKey`.
   */
  public grantManageKeySettings(grantee: iam.IGrantable): iam.Grant {
    if (!this.keySettingsTable) {
      throw new Error(`${this.node.path}: grantManageKeySettings needs a key settings table, which exists only when the contract has perKey (VendorContract.of({ perKey: KeyLimits.of({...}) }))`);
    }
    return grantManageKeySettings(this.keySettingsTable, grantee);
  }
}

class ImportedVendorContractState extends Construct implements IVendorContractState {
  public readonly contract: VendorContract;
  public readonly pacerTable: dynamodb.ITable;
  public readonly dynamicDelay?: IDynamicDelay;
  public readonly keySettingsTable?: dynamodb.ITable;

  constructor(scope: Construct, id: string, attrs: VendorContractStateAttributes) {
    super(scope, id);
    this.contract = attrs.contract;
    this.pacerTable = dynamodb.Table.fromTableAttributes(this, 'PacerTable', {
      tableName: attrs.pacerTableName,
      tableArn: attrs.pacerTableArn,
    });
    if (attrs.keySettingsTableName !== undefined || attrs.keySettingsTableArn !== undefined) {
      this.keySettingsTable = dynamodb.Table.fromTableAttributes(this, 'KeySettingsTable', {
        tableName: attrs.keySettingsTableName,
        tableArn: attrs.keySettingsTableArn,
      });
    }
    if (attrs.dynamicDelay) {
      this.dynamicDelay = DynamicDelay.fromDynamicDelayAttributes(this, 'DynamicDelay', {
        ...attrs.dynamicDelay,
        maxRequestsPerSecond: attrs.dynamicDelay.maxRequestsPerSecond ?? attrs.contract.requestsPerSecond,
      });
    }
  }
}
