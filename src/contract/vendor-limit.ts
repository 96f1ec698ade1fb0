import { Token } from 'aws-cdk-lib';
import { NAMED_LIMIT_NAME_PATTERN, NamedLimitSpec, pathUnderPrefix } from './named-limit';
import { VENDOR_CALL_METHODS } from '../shared/messages';
import { pathProblem } from '../shared/vendor-call';

/**
 * Properties of a named limit of the vendor contract.
 */
export interface VendorLimitProps {
  /**
   * The limit's name: part of its cursor's attribute in the pacer item and of the demo's
   * `violationsByLimit`. Letters, digits, `-` and `_`, at most 64. Keep it unchanged across
   * deploys: a new name starts a new schedule.
   */
  readonly name: string;

  /**
   * The most requests per second the vendor allows for the calls this limit binds. At most the
   * contract's `requestsPerSecond` (a higher one could never bind).
   */
  readonly requestsPerSecond: number;

  /**
   * The limit binds calls whose path lies under this prefix, segment by segment (`/results` binds
   * `/results` and `/results/42`, not `/results-archive`). A job submission is the call `POST /`.
   *
   * @default '/' - every path
   */
  readonly pathPrefix?: string;

  /**
   * The limit binds calls with one of these methods.
   *
   * @default - every method
   */
  readonly methods?: string[];
}

/**
 * A named limit of the vendor contract: a lower rate for some calls (e.g. result fetches at 2 RPS
 * inside a 10 RPS contract), chosen by method and path. Every call it binds is paced against both
 * the contract and this limit, with one conditional write (see the README, "Several limits at
 * once"): no sliding 1-second window at the vendor holds more than `floor(requestsPerSecond)` of
 * the calls it binds.
 *
 * @example
 * VendorContract.of({
 *   requestsPerSecond: 10,
 *   limits: [VendorLimit.of({ name: 'results', requestsPerSecond: 2, pathPrefix: '/results', methods: ['GET'] })],
 * });
 */
export class VendorLimit {
  /** A named limit from its properties; throws at synth time when one cannot hold. */
  public static of(props: VendorLimitProps): VendorLimit {
    return new VendorLimit(props);
  }

  /** The limit's name. */
  public readonly name: string;
  /** The most requests per second for the calls it binds. */
  public readonly requestsPerSecond: number;
  /** The calls it binds: paths under this prefix. */
  public readonly pathPrefix: string;
  /** The calls it binds: these methods (undefined: every method). */
  public readonly methods?: string[];

  private constructor(props: VendorLimitProps) {
    if (!NAMED_LIMIT_NAME_PATTERN.test(props.name)) {
      throw new Error(`VendorLimit: the name must be 1 to 64 letters, digits, '-' or '_', got '${props.name}'`);
    }
    const what = `VendorLimit '${props.name}'`;
    if (Token.isUnresolved(props.requestsPerSecond)) {
      throw new Error(`${what}: requestsPerSecond must be a plain number known at synth time (given a token)`);
    }
    if (!Number.isFinite(props.requestsPerSecond) || props.requestsPerSecond <= 0 || props.requestsPerSecond > 10_000) {
      throw new Error(`${what}: requestsPerSecond must be above 0 and at most 10000 (given ${props.requestsPerSecond})`);
    }
    const pathPrefix = props.pathPrefix ?? '/';
    // A prefix is a path of its own ('/' included); a trailing '/' is allowed and ignored.
    const problem = pathPrefix === '/' ? undefined : pathProblem(pathPrefix.endsWith('/') ? pathPrefix.slice(0, -1) : pathPrefix);
    if (problem) {
      throw new Error(`${what}: pathPrefix: ${problem}`);
    }
    let methods: string[] | undefined;
    if (props.methods !== undefined) {
      methods = props.methods.map((m) => m.toUpperCase());
      const unknown = methods.filter((m) => !(VENDOR_CALL_METHODS as readonly string[]).includes(m));
      if (methods.length === 0 || unknown.length > 0) {
        throw new Error(`${what}: methods must be a non-empty list of ${VENDOR_CALL_METHODS.join(', ')} (given ${JSON.stringify(props.methods)}); leave it out to bind every method`);
      }
    }
    this.name = props.name;
    this.requestsPerSecond = props.requestsPerSecond;
    this.pathPrefix = pathPrefix;
    this.methods = methods;
  }

  /** Whether this limit binds a call with `method` to `path` (a job submission is `POST /`). */
  public binds(method: string, path: string): boolean {
    return (this.methods === undefined || this.methods.includes(method.toUpperCase())) && pathUnderPrefix(path, this.pathPrefix);
  }

  /**
   * The JSON form the handlers read (named-limit.ts).
   * @internal
   */
  public _spec(): NamedLimitSpec {
    return {
      name: this.name,
      requestsPerSecond: this.requestsPerSecond,
      ...(this.pathPrefix !== '/' ? { pathPrefix: this.pathPrefix } : {}),
      ...(this.methods ? { methods: [...this.methods] } : {}),
    };
  }
}
