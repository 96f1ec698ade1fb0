import { validateHeaderName } from '../shared/validation';

/**
 * How the dispatch workflow tells the vendor where to call back.
 */
export class CallbackUrlDelivery {
  /**
   * Adds the webhook URL to the request body (which must then be a JSON object) as `fieldName`.
   */
  public static bodyField(fieldName: string = 'callbackUrl'): CallbackUrlDelivery {
    if (!/^[A-Za-z0-9_-]+$/.test(fieldName)) {
      throw new Error(`fieldName must be a top-level field name of letters, digits, '_' and '-' (given '${fieldName}')`);
    }
    return new CallbackUrlDelivery(fieldName, undefined);
  }

  /** Sends the webhook URL in the request header `headerName`. */
  public static header(headerName: string = 'X-Callback-Url'): CallbackUrlDelivery {
    validateHeaderName(headerName);
    return new CallbackUrlDelivery(undefined, headerName);
  }

  /** The vendor is configured with the webhook URL out of band: send nothing. */
  public static none(): CallbackUrlDelivery {
    return new CallbackUrlDelivery(undefined, undefined);
  }

  /** The body field that carries the URL, if any. */
  public readonly bodyFieldName?: string;
  /** The header that carries the URL, if any. */
  public readonly headerName?: string;

  private constructor(bodyFieldName?: string, headerName?: string) {
    this.bodyFieldName = bodyFieldName;
    this.headerName = headerName;
  }
}
