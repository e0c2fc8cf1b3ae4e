// keel: one include for applications.
#pragma once

#include "keel/app.hpp"
#include "keel/async.hpp"
#include "keel/client.hpp"
#include "keel/errors.hpp"
#include "keel/json_writer.hpp"
#include "keel/logger.hpp"
#include "keel/metrics.hpp"
#include "keel/request.hpp"
#include "keel/response.hpp"
#include "keel/task.hpp"
#include "keel/url.hpp"
