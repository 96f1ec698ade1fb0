/**
 * The queue URL for an SQS queue ARN, as SQS event records carry only the ARN. With an endpoint
 * override (AWS_ENDPOINT_URL_SQS, e.g. the local runtime) the URL is `<endpoint>/<account>/<name>`.
 * Plain string work: used by the handlers, no SDK.
 *
 * @returns undefined when `arn` is not an SQS queue ARN (callers word their own error)
 */
export function sqsQueueUrl(arn: string, endpointUrl?: string): string | undefined {
  const parts = arn.split(':');
  if (parts.length !== 6 || parts[0] !== 'arn' || parts[2] !== 'sqs' || !parts[3] || !parts[4] || !parts[5]) {
    return undefined;
  }
  const [, partition, , region, account, name] = parts;
  if (endpointUrl) {
    return `${endpointUrl.replace(/\/+$/, '')}/${account}/${name}`;
  }
  const domain = partition === 'aws-cn' ? 'amazonaws.com.cn' : 'amazonaws.com';
  return `https://sqs.${region}.${domain}/${account}/${name}`;
}
