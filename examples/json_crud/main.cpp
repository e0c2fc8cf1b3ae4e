// json_crud: an in-memory JSON CRUD service for to-do items. Invalid bodies are answered 422 (RFC 9457
// problem+json) by throwing keel::HttpError; the longest accepted title is a setting of the
// service's own, declared with keel's Settings API (flag --max-title-length, environment
// JSON_CRUD_MAX_TITLE_LENGTH, file key app.max_title_length).
//
//   ./json_crud --bind 127.0.0.1:8000 --max-title-length 40
//   curl -X POST -H 'Content-Type: application/json' -d '{"title":"write docs"}' http://127.0.0.1:8000/todos
#include <keel/keel.hpp>

#include <cstdint>
#include <map>
#include <string>

namespace {

struct Todo {
  std::string title;
  bool done = false;
};

nlohmann::json to_json(std::int64_t id, const Todo& todo) {
  return {{"id", id}, {"title", todo.title}, {"done", todo.done}};
}

// The body of POST and PUT: {"title": "1..max_title characters", "done": false}. Every problem is
// a 422 naming the field; a malformed body is a 400 and a non-JSON one a 415 (Request::json()).
Todo parse_todo(const keel::Request& req, std::size_t max_title) {
  // Browsers post text/plain, form types or no Content-Type cross-site without a CORS preflight:
  // require JSON explicitly (docs/api.md).
  if (!req.header("Content-Type")) throw keel::HttpError(415, "send the body as Content-Type: application/json");
  const nlohmann::json body = req.json();
  if (!body.is_object()) throw keel::HttpError(422, "the body must be a JSON object");
  for (const auto& [key, value] : body.items()) {
    if (key != "title" && key != "done") throw keel::HttpError(422, "unknown field '" + key + "'");
  }
  Todo todo;
  const auto title = body.find("title");
  if (title == body.end() || !title->is_string()) throw keel::HttpError(422, "title: a string is required");
  todo.title = title->get<std::string>();
  if (todo.title.empty() || todo.title.size() > max_title) {
    throw keel::HttpError(422, "title: 1 to " + std::to_string(max_title) + " characters");
  }
  if (const auto done = body.find("done"); done != body.end()) {
    if (!done->is_boolean()) throw keel::HttpError(422, "done: must be true or false");
    todo.done = done->get<bool>();
  }
  return todo;
}

}  // namespace

int main(int argc, char** argv) {
  keel::App app;
  app.name("json-crud").description("an in-memory to-do list (keel example)");  // settings prefix JSON_CRUD_
  app.settings().add({.name = "max_title_length",
                      .type = keel::SettingType::kInt,
                      .default_value = "80",
                      .help = "longest title accepted, in bytes",
                      .min = 1,
                      .max = 10000});
  // The items live in the worker's memory: one worker, so that every request sees the same list
  // (--workers would give each worker its own). A real service keeps them in a database.
  app.options().workers = 1;

  // Handlers that return a Response (not a Task) run one at a time on the worker's event loop:
  // the map needs no lock.
  std::map<std::int64_t, Todo> todos;
  std::int64_t next_id = 1;
  std::size_t max_title = 0;
  // Settings are resolved by App::run(); read them in a startup hook (or in handlers).
  app.on_startup([&] { max_title = static_cast<std::size_t>(app.settings().integer("max_title_length")); });

  auto find = [&todos](keel::Request& req) -> std::map<std::int64_t, Todo>::iterator {
    const auto it = todos.find(req.param_int("id"));
    if (it == todos.end()) throw keel::HttpError(404, "no todo " + std::string(req.param("id")));
    return it;
  };

  app.get("/todos", [&](keel::Request&) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [id, todo] : todos) list.push_back(to_json(id, todo));
    return list;
  });
  app.post("/todos", [&](keel::Request& req) {
    Todo todo = parse_todo(req, max_title);
    const std::int64_t id = next_id++;
    todos.emplace(id, todo);
    keel::Response res = keel::Response::json(to_json(id, todo), 201);
    res.add_header("Location", "/todos/" + std::to_string(id));
    return res;
  });
  app.get("/todos/{id:int}", [&](keel::Request& req) {
    const auto it = find(req);
    return to_json(it->first, it->second);
  });
  app.put("/todos/{id:int}", [&](keel::Request& req) {
    const auto it = find(req);
    it->second = parse_todo(req, max_title);
    return to_json(it->first, it->second);
  });
  app.del("/todos/{id:int}", [&](keel::Request& req) {
    todos.erase(find(req));
    return keel::Response(204);
  });
  return app.run(argc, argv);
}
